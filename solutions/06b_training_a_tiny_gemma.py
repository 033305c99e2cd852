"""Solutions to the exercises of notebooks/06b_training_a_tiny_gemma.ipynb."""

import torch


def logits_gradient(logits, targets):
    # loss = mean over N of −log softmax(z)[target]; its derivative in z is softmax(z) − onehot(target),
    # and the mean divides by N.
    N, V = logits.shape
    return (logits.softmax(-1) - torch.nn.functional.one_hot(targets, V)) / N


def best_context_free_loss(ids, vocab_size):
    # The best fixed distribution q minimises −Σ p ln q (p = the token frequencies): q = p (Gibbs'
    # inequality), and the loss is then the entropy of p.
    p = torch.bincount(ids, minlength=vocab_size).double() / len(ids)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


# Exercise 6b.2, the questions: the entropy of the frequencies is at most ln V, and equal to it only
# when every token of the vocabulary occurs equally often. On real text, where a few tokens (spaces,
# "e", "the") are far more common than others, it is much lower: a model must beat this number, not
# only ln V, before it can be said to use the context.


def fool_the_shortcut(ids, logprobs, vocab_size):
    # A softmax over the k kept pieces sees only their logits, and only up to a constant: give them the
    # teacher's log-probabilities (their softmax is then the teacher's renormalised q) and give every
    # other piece a logit far above them. The shortcut loss is 0, yet the student's real softmax puts
    # almost all of its probability on pieces the teacher never chose. The full-vocabulary softmax of
    # distill.sparse_kl sees that mass and charges for it.
    logits = torch.full((len(ids), vocab_size), 20.0)
    return logits.scatter(-1, ids, logprobs.float())
