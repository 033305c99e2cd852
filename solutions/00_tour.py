"""Solutions to the exercises of notebooks/00_tour.ipynb."""

import torch


def greedy_no_cache(model, ids, n):
    ids = list(ids)
    new = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids + new]))[0, -1].argmax())
            new.append(nxt)
    return new


def next_token_probability(model, tokenizer, prompt, word):
    ids = torch.tensor([tokenizer.encode(prompt, add_bos=True)])
    with torch.no_grad():
        probs = model(ids)[0, -1].softmax(-1)
    return probs[tokenizer.encode(word)[0]].item()
