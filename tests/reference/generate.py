#!/usr/bin/env python3
"""Reference values for scorecl-core, made with PyTorch.

How to run (not needed by the tests, which read the committed JSON):

    pip install torch scipy      # CPU is enough (scipy: the Spearman cases)
    python3 tests/reference/generate.py            # writes tests/fixtures/*.json
    python3 tests/reference/generate.py --out DIR  # writes elsewhere

then `cargo test -p scorecl-core --test reference` checks every case.

Every file holds one case: {"name", "kind", "config", "n", "d", "inputs",
"expected"}. Inputs are float32 values (written exactly); expected values are
computed by PyTorch in float64 from those float32 inputs, with autograd for
every gradient. Matrices are flat row-major arrays.

kinds and their fields
  simclr         config temperature;             inputs z1 z2 weights;    expected loss grad_z1 grad_z2
  simsiam        config {};                      inputs p1 p2 z1 z2 weights; expected loss grad_p1 grad_p2
  wmse           config eps w_size;              inputs z1 z2 weights;    expected loss grad_z1 grad_z2
  vicreg         config sim_coeff std_coeff cov_coeff; inputs z1 z2 weights; expected loss grad_z1 grad_z2
  dsm            config {};                      inputs score noise sigma; expected loss grad_score
  score_weights  config gamma alpha w_max;       inputs s1 s2;            expected weights
  spearman       config {};                      inputs x y;              expected rho (null when undefined), rank_x
  xent           config classes;                 inputs logits labels;    expected loss grad_logits top1 top5
  knn            config temperature k classes;   inputs train train_labels test (n = test rows); expected pred
Optimizer rules (n = parameter count, d = 1):
  sgd            config lr momentum dampening weight_decay nesterov steps; inputs params grads (steps x n);
                 expected params momentum
  lars           config lr momentum dampening weight_decay nesterov eta eps clip_lr
                 exclude_bias_n_norm is_1d steps; inputs params grads; expected params momentum
  adam, adamw    config lr beta1 beta2 eps weight_decay steps; inputs params grads;
                 expected params exp_avg exp_avg_sq
  warmup_cosine  config base_lr warmup_start_lr min_lr warmup_steps total_steps; inputs {};
                 expected lr (one per step 0..total_steps, n = total_steps + 1)

Sources of the formulas: SimCLR/NT-Xent as in solo-learn's simclr loss;
SimSiam (Chen & He); W-MSE as htdt/self-supervised's Whitening2d and
norm_mse_loss; VICReg as facebookresearch/vicreg main_vicreg.py; DSM with
lambda(sigma) = sigma^2; k-NN vote as lightly/InstDisc; SGD, Adam, AdamW are
torch.optim; LARS is solo-learn's solo/utils/lars.py (reproduced below, it is
not a torch class); the schedule is solo-learn's LinearWarmupCosineAnnealingLR
closed form.
"""

import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def f32(t):
    """Round a tensor to float32 values, kept as float64 for the reference."""
    return t.to(torch.float32).to(torch.float64)


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def randn(gen, *shape, scale=1.0, shift=0.0):
    return f32(torch.randn(*shape, generator=gen) * scale + shift)


def weights(gen, n, mode):
    if mode == "ones":
        return f32(torch.ones(n))
    if mode == "random":
        return f32(torch.rand(n, generator=gen) * 2.0)
    if mode == "zeros_some":
        w = torch.rand(n, generator=gen) * 3.0
        w[0] = 0.0
        return f32(w)
    raise ValueError(mode)


# --------------------------------------------------------------------------- losses


def simclr_ref(z1, z2, w, tau):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    ce = F.cross_entropy(sim, pos, reduction="none")
    return (w.repeat(2) * ce).sum() / (2 * n)


def simsiam_ref(p1, p2, z1, z2, w):
    n = p1.shape[0]
    c1 = (F.normalize(p1, dim=1) * F.normalize(z2.detach(), dim=1)).sum(1)
    c2 = (F.normalize(p2, dim=1) * F.normalize(z1.detach(), dim=1)).sum(1)
    return -(w * (c1 + c2)).sum() / (2 * n)


def whitening2d(x, eps):
    """htdt/self-supervised Whitening2d.forward (training mode), one chunk."""
    d = x.shape[1]
    m = x.mean(0, keepdim=True)
    xn = x - m
    f_cov = xn.T @ xn / (x.shape[0] - 1)
    eye = torch.eye(d)
    f_cov_shrinked = (1 - eps) * f_cov + eps * eye
    inv_sqrt = torch.linalg.solve_triangular(
        torch.linalg.cholesky(f_cov_shrinked), eye, upper=False
    )
    return xn @ inv_sqrt.T


def wmse_ref(z1, z2, w, eps, w_size):
    n = z1.shape[0]
    outs = []
    for x in (z1, z2):
        chunks = [whitening2d(x[i : i + w_size], eps) for i in range(0, n, w_size)]
        outs.append(torch.cat(chunks))
    a, b = (F.normalize(o, dim=1) for o in outs)
    return (w * (2 - 2 * (a * b).sum(1))).sum() / n


def vicreg_ref(x, y, w, sim_coeff, std_coeff, cov_coeff):
    n, d = x.shape
    repr_loss = (w[:, None] * (x - y) ** 2).sum() / (n * d)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)

    def off_diagonal(m):
        return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()

    cov_loss = off_diagonal(cov_x).pow(2).sum() / d + off_diagonal(cov_y).pow(2).sum() / d
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def dsm_ref(score, noise, sigma):
    n = score.shape[0]
    r = sigma[:, None] * score + noise
    return 0.5 * (r**2).sum() / n


def score_weights_ref(s1, s2, gamma, alpha, w_max):
    d = s1.shape[1]
    a = s1.norm(dim=1) / math.sqrt(d)
    b = s2.norm(dim=1) / math.sqrt(d)
    raw = (a - b).abs() ** gamma
    mean = raw.mean()
    wts = raw / mean if mean > 1e-12 else torch.ones_like(raw)
    wts = (1 - alpha) + alpha * wts
    return wts.clamp(max=w_max)


def knn_ref(train, train_labels, test, k, temperature, classes):
    train_n = F.normalize(train, dim=1)
    test_n = F.normalize(test, dim=1)
    sim = test_n @ train_n.T
    k = min(k, train.shape[0])
    sim_w, sim_idx = sim.topk(k, dim=1)
    sim_labels = train_labels[sim_idx]
    sim_w = (sim_w / temperature).exp()
    one_hot = torch.zeros(test.shape[0], k, classes)
    one_hot.scatter_(-1, sim_labels.unsqueeze(-1), 1.0)
    scores = (one_hot * sim_w.unsqueeze(-1)).sum(1)
    return scores.argmax(-1), sim, scores, k


# --------------------------------------------------------------------------- optimizers


class LARS(torch.optim.Optimizer):
    """solo-learn's solo/utils/lars.py (from PyTorch Lightning Bolts)."""

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 eta=1e-3, eps=1e-8, clip_lars_lr=False, exclude_bias_n_norm_lars=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, eta=eta, eps=eps,
                        clip_lars_lr=clip_lars_lr,
                        exclude_bias_n_norm_lars=exclude_bias_n_norm_lars)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            weight_decay = group["weight_decay"]
            momentum = group["momentum"]
            dampening = group["dampening"]
            nesterov = group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                p_norm = torch.norm(p.data)
                g_norm = torch.norm(p.grad.data)
                if p.ndim != 1 or not group["exclude_bias_n_norm_lars"]:
                    if p_norm != 0 and g_norm != 0:
                        lars_lr = p_norm / (g_norm + p_norm * weight_decay + group["eps"])
                        lars_lr *= group["eta"]
                        if group["clip_lars_lr"]:
                            lars_lr = min(lars_lr / group["lr"], 1)
                        d_p = d_p.add(p, alpha=weight_decay)
                        d_p *= lars_lr
                if momentum != 0:
                    param_state = self.state[p]
                    if "momentum_buffer" not in param_state:
                        buf = param_state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = param_state["momentum_buffer"]
                        buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
                    if nesterov:
                        d_p = d_p.add(buf, alpha=momentum)
                    else:
                        d_p = buf
                p.add_(d_p, alpha=-group["lr"])


def run_optimizer(make, params0, grads, shape):
    p = torch.nn.Parameter(params0.clone().reshape(shape))
    opt = make([p])
    for g in grads:
        p.grad = g.clone().reshape(shape)
        opt.step()
    return p, opt.state[p]


def warmup_cosine_ref(t, base_lr, warmup_start_lr, min_lr, warmup_steps, total_steps):
    """solo-learn LinearWarmupCosineAnnealingLR._get_closed_form_lr at step t."""
    if t < warmup_steps:
        return warmup_start_lr + t * (base_lr - warmup_start_lr) / (warmup_steps - 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (
        1 + math.cos(math.pi * (t - warmup_steps) / (total_steps - warmup_steps))
    )


# --------------------------------------------------------------------------- cases


def case(name, kind, config, n, d, inputs, expected):
    return {"name": name, "kind": kind, "config": config, "n": n, "d": d,
            "inputs": inputs, "expected": expected}


def loss_case(name, kind, config, fn, tensors, grad_names):
    """Runs fn on leaf tensors, returns the loss and the asked gradients."""
    leaves = {k: v.clone().requires_grad_(k in grad_names) for k, v in tensors.items()}
    loss = fn(**leaves)
    loss.backward()
    n, d = tensors["z1"].shape if "z1" in tensors else tensors["p1"].shape
    expected = {"loss": float(loss.detach())}
    for g in grad_names:
        expected["grad_" + g] = flat(leaves[g].grad)
    inputs = {k: flat(v) for k, v in tensors.items()}
    return case(name, kind, config, int(n), int(d), inputs, expected)


def simclr_cases(gen):
    specs = [
        ("n2_d1", 2, 1, 0.5, "ones", 1.0),
        ("n4_d8_tau0.2", 4, 8, 0.2, "random", 1.0),
        ("n8_d16_tau0.05", 8, 16, 0.05, "random", 1.0),
        ("n5_d3_zero_weight", 5, 3, 0.1, "zeros_some", 3.0),
        ("n16_d32_tau0.5", 16, 32, 0.5, "random", 0.3),
        ("n3_d4_uniform_tau1", 3, 4, 1.0, "ones", 5.0),
    ]
    out = []
    for name, n, d, tau, wmode, scale in specs:
        z1 = randn(gen, n, d, scale=scale)
        z2 = f32(z1 + torch.randn(n, d, generator=gen) * 0.5 * scale)
        w = weights(gen, n, wmode)
        out.append(loss_case(
            "simclr_" + name, "simclr", {"temperature": tau},
            lambda z1, z2, weights: simclr_ref(z1, z2, weights, tau),
            {"z1": z1, "z2": z2, "weights": w}, ["z1", "z2"]))
    return out


def simsiam_cases(gen):
    specs = [
        ("n2_d1", 2, 1, "ones"),
        ("n4_d8", 4, 8, "random"),
        ("n8_d16", 8, 16, "random"),
        ("n5_d3_zero_weight", 5, 3, "zeros_some"),
        ("n16_d32_uniform", 16, 32, "ones"),
    ]
    out = []
    for name, n, d, wmode in specs:
        z1 = randn(gen, n, d)
        z2 = f32(z1 + torch.randn(n, d, generator=gen) * 0.7)
        p1 = f32(z1 + torch.randn(n, d, generator=gen) * 0.5)
        p2 = f32(z2 + torch.randn(n, d, generator=gen) * 0.5)
        w = weights(gen, n, wmode)
        out.append(loss_case(
            "simsiam_" + name, "simsiam", {},
            lambda p1, p2, z1, z2, weights: simsiam_ref(p1, p2, z1, z2, weights),
            {"p1": p1, "p2": p2, "z1": z1, "z2": z2, "weights": w}, ["p1", "p2"]))
    return out


def wmse_cases(gen):
    out = []
    specs = [
        ("n2_d1", 2, 1, 2, 0.0, "ones", False),
        ("n8_d3_w4", 8, 3, 4, 0.0, "random", False),
        ("n16_d4_w8_eps0.1", 16, 4, 8, 0.1, "random", False),
        ("n12_d2_w6", 12, 2, 6, 0.0, "zeros_some", False),
        ("n8_d4_w8_near_singular_eps0.05", 8, 4, 8, 0.05, "random", True),
        ("n32_d8_w16", 32, 8, 16, 0.0, "random", False),
    ]
    for name, n, d, w_size, eps, wmode, singular in specs:
        if singular:
            # Rows nearly on a line: the covariance has one large eigenvalue
            # and d-1 of order 1e-6; only eps keeps the factor well posed.
            t = torch.randn(n, 1, generator=gen)
            direction = torch.randn(1, d, generator=gen)
            z1 = f32(t @ direction + 1e-3 * torch.randn(n, d, generator=gen))
            z2 = f32(t @ direction + 1e-3 * torch.randn(n, d, generator=gen))
        else:
            z1 = randn(gen, n, d, scale=1.5, shift=0.3)
            z2 = f32(z1 + torch.randn(n, d, generator=gen) * 0.8)
        w = weights(gen, n, wmode)
        out.append(loss_case(
            "wmse_" + name, "wmse", {"eps": eps, "w_size": w_size},
            lambda z1, z2, weights: wmse_ref(z1, z2, weights, eps, w_size),
            {"z1": z1, "z2": z2, "weights": w}, ["z1", "z2"]))
    return out


def vicreg_cases(gen):
    out = []
    specs = [
        ("n2_d1", 2, 1, 0.3, "ones", (25.0, 25.0, 1.0)),
        ("n4_d3", 4, 3, 0.5, "random", (25.0, 25.0, 1.0)),
        ("n8_d8_std_above_one", 8, 8, 3.0, "random", (25.0, 25.0, 1.0)),
        ("n16_d4_mixed_scale", 16, 4, None, "zeros_some", (25.0, 25.0, 1.0)),
        ("n6_d5_coeffs", 6, 5, 0.8, "random", (10.0, 5.0, 2.0)),
    ]
    for name, n, d, scale, wmode, (sc, stc, cc) in specs:
        if scale is None:
            cols = torch.tensor([0.2, 0.6, 1.8, 3.0])
            z1 = f32(torch.randn(n, d, generator=gen) * cols)
        else:
            z1 = randn(gen, n, d, scale=scale)
        z2 = f32(z1 + torch.randn(n, d, generator=gen) * 0.3)
        w = weights(gen, n, wmode)
        out.append(loss_case(
            "vicreg_" + name, "vicreg",
            {"sim_coeff": sc, "std_coeff": stc, "cov_coeff": cc},
            lambda z1, z2, weights: vicreg_ref(z1, z2, weights, sc, stc, cc),
            {"z1": z1, "z2": z2, "weights": w}, ["z1", "z2"]))
    return out


def dsm_cases(gen):
    out = []
    sigmas = [math.exp(x) for x in torch.linspace(math.log(1.0), math.log(0.01), 10).tolist()]
    specs = [("n2_d1", 2, 1), ("n4_d12", 4, 12), ("n3_d48", 3, 48), ("n8_d3", 8, 3),
             ("n5_d27_large_score", 5, 27)]
    for name, n, d in specs:
        idx = torch.randint(0, 10, (n,), generator=gen)
        sigma = f32(torch.tensor([sigmas[i] for i in idx.tolist()]))
        noise = randn(gen, n, d)
        scale = 30.0 if "large" in name else 1.0
        score = randn(gen, n, d, scale=scale)
        s = score.clone().requires_grad_(True)
        loss = dsm_ref(s, noise, sigma)
        loss.backward()
        out.append(case("dsm_" + name, "dsm", {}, n, d,
                        {"score": flat(score), "noise": flat(noise), "sigma": flat(sigma)},
                        {"loss": float(loss.detach()), "grad_score": flat(s.grad)}))
    return out


def score_weight_cases(gen):
    out = []
    specs = [
        ("n2_d1", 2, 1, 1.0, 1.0, 5.0, "random"),
        ("n8_d12_gamma2_alpha0.5", 8, 12, 2.0, 0.5, 3.0, "random"),
        ("n16_d48_clamped", 16, 48, 1.0, 1.0, 1.5, "random"),
        ("n4_d6_all_equal", 4, 6, 1.0, 1.0, 5.0, "equal"),
        ("n6_d3_gamma0.5_alpha0", 6, 3, 0.5, 0.0, 5.0, "random"),
        ("n10_d20_default", 10, 20, 1.0, 1.0, 5.0, "random"),
    ]
    for name, n, d, gamma, alpha, w_max, mode in specs:
        s1 = randn(gen, n, d)
        if mode == "equal":
            s2 = s1.clone()
        else:
            s2 = f32(torch.randn(n, d, generator=gen) * (0.5 + torch.rand(n, 1, generator=gen)))
        wts = score_weights_ref(s1, s2, gamma, alpha, w_max)
        out.append(case("score_weights_" + name, "score_weights",
                        {"gamma": gamma, "alpha": alpha, "w_max": w_max}, n, d,
                        {"s1": flat(s1), "s2": flat(s2)}, {"weights": flat(wts)}))
    return out


def knn_cases(gen):
    out = []
    specs = [
        ("k_above_train", 6, 10, 4, 3, 50, 0.1),
        ("k1", 20, 7, 8, 4, 1, 0.1),
        ("k5_t0.05", 40, 12, 16, 5, 5, 0.05),
        ("k200_clamped", 60, 9, 6, 3, 200, 0.1),
        ("d1_k_all", 10, 5, 1, 2, 10, 0.5),
        ("k20_classes10", 100, 30, 32, 10, 20, 0.07),
    ]
    for name, n_train, n_test, d, classes, k, t in specs:
        for attempt in range(100):
            centres = torch.randn(classes, d, generator=gen) * 2.0
            labels = torch.randint(0, classes, (n_train,), generator=gen)
            train = f32(centres[labels] + torch.randn(n_train, d, generator=gen))
            test_labels = torch.randint(0, classes, (n_test,), generator=gen)
            test = f32(centres[test_labels] + torch.randn(n_test, d, generator=gen) * 1.5)
            pred, sim, scores, kk = knn_ref(train, labels, test, k, t, classes)
            # Reject draws whose answer depends on rounding: a near-tie at the
            # k-th neighbour or between the two best classes.
            ok = True
            srt = sim.sort(dim=1, descending=True).values
            if kk < n_train and (srt[:, kk - 1] - srt[:, kk]).min() < 1e-4:
                ok = False
            top2 = scores.sort(dim=1, descending=True).values[:, :2]
            if classes > 1 and ((top2[:, 0] - top2[:, 1]) / top2[:, 0]).min() < 1e-3:
                ok = False
            if ok:
                break
        else:
            raise RuntimeError(f"knn case {name}: no tie-free draw")
        out.append(case("knn_" + name, "knn",
                        {"temperature": t, "k": k, "classes": classes}, n_test, d,
                        {"train": flat(train), "train_labels": [int(x) for x in labels.tolist()],
                         "test": flat(test)},
                        {"pred": [int(x) for x in pred.tolist()]}))
    return out


def sgd_cases(gen):
    out = []
    specs = [
        ("plain", dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)),
        ("momentum_wd", dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False)),
        ("nesterov", dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=1e-4, nesterov=True)),
        ("dampening", dict(lr=0.2, momentum=0.5, dampening=0.3, weight_decay=0.0, nesterov=False)),
        ("one_element", dict(lr=1.0, momentum=0.9, dampening=0.0, weight_decay=0.1, nesterov=False)),
    ]
    for name, cfg in specs:
        n = 1 if name == "one_element" else 7
        steps = 4
        p0 = randn(gen, n)
        grads = [randn(gen, n) for _ in range(steps)]
        p, state = run_optimizer(lambda ps: torch.optim.SGD(ps, **cfg), p0, grads, (n,))
        buf = state.get("momentum_buffer")
        buf = torch.zeros(n) if buf is None else buf
        out.append(case("sgd_" + name, "sgd", dict(cfg, steps=steps), n, 1,
                        {"params": flat(p0), "grads": flat(torch.stack(grads))},
                        {"params": flat(p), "momentum": flat(buf)}))
    return out


def lars_cases(gen):
    out = []
    base = dict(lr=0.4, momentum=0.9, dampening=0.0, weight_decay=1e-5, nesterov=False,
                eta=0.02, eps=1e-8, clip_lr=True, exclude_bias_n_norm=True)
    specs = [
        ("matrix_clipped", dict(base), False),
        ("bias_excluded", dict(base), True),
        ("matrix_unclipped", dict(base, clip_lr=False, eta=0.001), False),
        ("bias_not_excluded", dict(base, exclude_bias_n_norm=False, weight_decay=1e-4), True),
        ("nesterov_wd", dict(base, nesterov=True, weight_decay=1e-3, lr=0.1), False),
    ]
    for name, cfg, is_1d in specs:
        shape = (6,) if is_1d else (3, 4)
        n = math.prod(shape)
        steps = 3
        p0 = randn(gen, n, scale=0.5)
        grads = [randn(gen, n, scale=0.1) for _ in range(steps)]
        p, state = run_optimizer(
            lambda ps: LARS(ps, lr=cfg["lr"], momentum=cfg["momentum"], dampening=cfg["dampening"],
                            weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"],
                            eta=cfg["eta"], eps=cfg["eps"], clip_lars_lr=cfg["clip_lr"],
                            exclude_bias_n_norm_lars=cfg["exclude_bias_n_norm"]),
            p0, grads, shape)
        out.append(case("lars_" + name, "lars", dict(cfg, is_1d=is_1d, steps=steps), n, 1,
                        {"params": flat(p0), "grads": flat(torch.stack(grads))},
                        {"params": flat(p), "momentum": flat(state["momentum_buffer"])}))
    return out


def adam_cases(gen, kind):
    out = []
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    wd = 0.0 if kind == "adam" else 0.01
    specs = [
        ("defaults", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=wd), 5),
        ("lr1e-4_one_step", dict(lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=wd), 1),
        ("weight_decay", dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05), 4),
        ("betas", dict(lr=3e-3, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=wd), 6),
        ("tiny_grads", dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=wd), 3),
    ]
    for name, cfg, steps in specs:
        n = 9
        p0 = randn(gen, n)
        gscale = 1e-6 if name == "tiny_grads" else 1.0
        grads = [randn(gen, n, scale=gscale) for _ in range(steps)]
        p, state = run_optimizer(
            lambda ps: cls(ps, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                           weight_decay=cfg["weight_decay"]),
            p0, grads, (n,))
        out.append(case(f"{kind}_{name}", kind, dict(cfg, steps=steps), n, 1,
                        {"params": flat(p0), "grads": flat(torch.stack(grads))},
                        {"params": flat(p), "exp_avg": flat(state["exp_avg"]),
                         "exp_avg_sq": flat(state["exp_avg_sq"])}))
    return out


def schedule_cases():
    out = []
    specs = [
        ("solo_cifar", 0.4, 3e-5, 0.0, 10, 100),
        ("no_warmup", 1.0, 0.0, 0.0, 0, 20),
        ("min_lr", 0.3, 0.01, 0.001, 5, 40),
        ("warmup_two", 2.0, 0.0, 0.0, 2, 8),
        ("long_warmup", 0.1, 0.0, 0.0, 12, 13),
    ]
    for name, base_lr, start, min_lr, w, total in specs:
        lrs = [warmup_cosine_ref(t, base_lr, start, min_lr, w, total) for t in range(total + 1)]
        out.append(case("warmup_cosine_" + name, "warmup_cosine",
                        {"base_lr": base_lr, "warmup_start_lr": start, "min_lr": min_lr,
                         "warmup_steps": w, "total_steps": total},
                        total + 1, 1, {}, {"lr": lrs}))
    return out


def xent_cases(gen):
    """Softmax cross-entropy (F.cross_entropy, mean) and top-1/top-5 counts."""
    specs = [("n1_c2", 1, 2, 1.0), ("n4_c3", 4, 3, 2.0), ("n8_c10", 8, 10, 3.0),
             ("n16_c100_large", 16, 100, 30.0), ("n5_c7_small", 5, 7, 1e-3)]
    out = []
    for name, n, c, scale in specs:
        logits = randn(gen, n, c, scale=scale)
        labels = torch.randint(0, c, (n,), generator=gen)
        leaf = logits.clone().requires_grad_(True)
        loss = F.cross_entropy(leaf, labels)
        loss.backward()
        rank = (logits > logits.gather(1, labels[:, None])).sum(1)
        out.append(case("xent_" + name, "xent", {"classes": c}, n, c,
                        {"logits": flat(logits), "labels": [int(v) for v in labels]},
                        {"loss": float(loss.detach()), "grad_logits": flat(leaf.grad),
                         "top1": int((rank < 1).sum()), "top5": int((rank < 5).sum())}))
    return out


def spearman_cases(gen):
    """Spearman's rho and average ranks, as scipy.stats.spearmanr / rankdata."""
    from scipy.stats import rankdata, spearmanr
    out = []
    specs = [("n2", 2, None), ("n10_random", 10, None), ("n30_ties", 30, 4),
             ("n50_monotone_noise", 50, None), ("n8_constant_y", 8, "const")]
    for name, n, mode in specs:
        x = randn(gen, n)
        if mode == 4:
            x = f32(torch.round(x * 2) / 2)   # few distinct values: many ties
            y = f32(torch.round((x + torch.randn(n, generator=gen)) * 2) / 2)
        elif mode == "const":
            y = f32(torch.full((n,), 0.25))
        elif name.startswith("n50"):
            y = f32(x ** 3 + 0.3 * torch.randn(n, generator=gen))
        else:
            y = randn(gen, n)
        xs, ys = x.numpy(), y.numpy()
        rho = spearmanr(xs, ys).statistic if mode != "const" else float("nan")
        out.append(case("spearman_" + name, "spearman", {}, n, 1,
                        {"x": flat(x), "y": flat(y)},
                        {"rho": None if math.isnan(rho) else float(rho),
                         "rank_x": [float(r) for r in rankdata(xs)]}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures"))
    ap.add_argument("--seed", type=int, default=20230606)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    cases = (simclr_cases(gen) + simsiam_cases(gen) + wmse_cases(gen) + vicreg_cases(gen)
             + dsm_cases(gen) + score_weight_cases(gen) + knn_cases(gen) + sgd_cases(gen)
             + lars_cases(gen) + adam_cases(gen, "adam") + adam_cases(gen, "adamw")
             + schedule_cases() + xent_cases(gen) + spearman_cases(gen))
    os.makedirs(args.out, exist_ok=True)
    for c in cases:
        with open(os.path.join(args.out, c["name"] + ".json"), "w") as f:
            json.dump(c, f, separators=(",", ":"))
            f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(args.out)} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
