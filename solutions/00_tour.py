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


# Exercise 0.3 (open), an answer, measured with seed 0 and 16 new tokens after "The capital of France is":
#   temperature 0.1: " the capital of the country, which is located in the north of France. It" (the greedy text)
#   temperature 1.0: " the capital of The Netherlands, located where are the capital of the two French overseas"
#   temperature 1.5: " the icon gilt Nightingale House, set behind Glockeno crater volcano near Eiffel Tower<start_of_image>"
#   temperature 2.0: " Estrasn gilt near volcanic Mina Baru where dry ribs sugconvalent ary  miel"
# Around 1.5 the text stops making sense. The reason is the tail shown in the notebook: at 2.0, 78 %
# of the probability lies outside the best 100 pieces, so most steps draw a piece that does not
# fit, and each one derails what follows. top_p=0.9 at 1.5 removes the tail at every step
# (" the icon of natural tourism, following where are live Morcontour is not vacation"): real
# words again, but the flattened head still drifts; lower the temperature as well.
