"""Float64 references of the distillation losses, written from the papers' definitions (shared by the loss tests
and the property test)."""

import torch


def probs(logits, temperature):
    return torch.softmax(logits.double() / temperature, -1)


def kl64(p, q):
    """``sum p log(p / q)`` per row, in float64, with ``0 log 0 = 0``."""
    return torch.where(p > 0, p * (p.log() - q.log()), torch.zeros_like(p)).sum(-1)


def dkd_reference(student, teacher, labels, temperature, alpha, beta):
    """Zhao et al. (2022), eq. 1-4: binary and non-target distributions from the full softmax; a row without a label
    gets Hinton's KD, and the result is the mean over all rows."""
    p_s, p_t = probs(student, temperature), probs(teacher, temperature)
    per_row = kl64(p_t, p_s)
    keep = labels != -100
    if keep.any():
        p_s, p_t, kept = p_s[keep], p_t[keep], labels[keep]
        target = torch.nn.functional.one_hot(kept, p_s.shape[-1]).bool()
        pt_s, pt_t = p_s[target], p_t[target]
        tckd = kl64(torch.stack([pt_t, 1 - pt_t], -1), torch.stack([pt_s, 1 - pt_s], -1))
        others_s = p_s[~target].view(len(kept), -1) / (1 - pt_s)[:, None]
        others_t = p_t[~target].view(len(kept), -1) / (1 - pt_t)[:, None]
        per_row[keep] = alpha * tckd + beta * kl64(others_t, others_s)
    return (per_row * temperature**2).mean()


def dist_reference(student, teacher, temperature, beta, gamma):
    """Huang et al. (2022), the authors' code in float64."""
    y_s, y_t = probs(student, temperature), probs(teacher, temperature)

    def pearson(a, b):
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)

    inter = 1 - pearson(y_s, y_t).mean()
    intra = 1 - pearson(y_s.T, y_t.T).mean()
    return temperature**2 * (beta * inter + gamma * intra)


def jsd_reference(student, teacher, temperature, beta):
    """GKD's generalized JSD: ``beta KL(P||M) + (1 - beta) KL(Q||M)``, ``M = beta P + (1 - beta) Q``."""
    p, q = probs(teacher, temperature), probs(student, temperature)
    if beta == 0:
        return kl64(p, q).mean() * temperature**2
    if beta == 1:
        return kl64(q, p).mean() * temperature**2
    m = beta * p + (1 - beta) * q
    return (beta * kl64(p, m) + (1 - beta) * kl64(q, m)).mean() * temperature**2
