"""Solutions to the exercises of notebooks/13_speculative_decoding.ipynb."""


def expected_tokens(alpha, k):
    return sum(alpha ** i for i in range(k + 1))  # 1 + α + ... + α^k = (1 - α^(k+1)) / (1 - α)


def greedy_accept(target_choices, drafts):
    for i, d in enumerate(drafts):
        if d != target_choices[i]:
            return i, target_choices[i]
    return len(drafts), target_choices[len(drafts)]
