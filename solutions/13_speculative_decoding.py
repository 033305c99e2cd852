"""Solutions to the exercises of notebooks/13_speculative_decoding.ipynb."""


def expected_tokens(alphas):
    # The pass yields its i-th draft only if drafts 1..i are all accepted (chance α1·α2·…·αi), and
    # always yields the target's own token: E = 1 + α1 + α1α2 + … + α1…αk. With every αi = α this
    # is section 2's (1 − α^(k+1)) / (1 − α). For [0.9, 0.8, 0.6, 0.4] it is 3.22 against 4.10 for
    # a constant 0.9: the fourth draft adds only 0.17 tokens, less than its drafting step may cost.
    total, reach = 1.0, 1.0
    for a in alphas:
        reach *= a
        total += reach
    return total


def greedy_accept(target_choices, drafts):
    for i, d in enumerate(drafts):
        if d != target_choices[i]:
            return i, target_choices[i]
    return len(drafts), target_choices[len(drafts)]
