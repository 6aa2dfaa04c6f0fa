#!/usr/bin/env python3
"""Fit the scores of mxguard's default rules (rules/*.cf) on the training corpus.

Python 3 standard library only. Run from the repository root after `cargo build --release`:

    python3 benches/tune.py fit      [--corpus DIR]   # fit on the tuning split, write rules/99-scores.cf
    python3 benches/tune.py eval     [--corpus DIR]   # score the tuning split with the shipped rules
    python3 benches/tune.py holdout  [--corpus DIR]   # score the holdout split (final report only!)
    python3 benches/tune.py cv       [--corpus DIR]   # 5-fold cross-validation inside the tuning split
    python3 benches/tune.py bench    [--corpus DIR]   # scan rate over the whole corpus (msg/s)

DIR is an unpacked copy of ../shared/corpus/train.tar.gz (it holds train/ham and train/spam);
by default the script unpacks the tarball to a temporary directory itself.

Split (reproducible, independent of file order and of the machine):
    a message is in the HOLDOUT when int(sha256(file name)[:8], 16) % 4 == 0,
    otherwise in the TUNING split.  The file name is the base name, e.g.
    "spam-2-00001.317e78fa8ee2f54cd4890fdc09ba8176.eml".  That puts about 25 % of each class
    aside (630 ham / 379 spam of 2,620 / 1,396).  Rules and scores are developed on the
    tuning split only; the holdout is for the final report.

How the fit works:
 1. Copy rules/*.cf except 99-scores.cf (the previous fit) to a scratch rules directory and
    run `mxguard scan --json` with a scratch config pointing at it, over the tuning split.
    Every scored rule keeps its hand-set (non-zero) score there, so every rule is evaluated
    and reported: each message becomes a binary vector of rule hits.
 2. Fit one score per rule so that the message score s = sum(score_i * hit_i) separates the
    classes around the tag threshold T (5.0): minimise
        sum_msgs  c_y * log(1 + exp(-y * (s - T - y*M) / W))  +  L2 * sum_i (score_i - prior_i)^2
    where y = +1 for spam and -1 for ham, c_ham = HAM_COST (ham errors cost more than spam
    misses: the target is FP near zero), M = MARGIN (scores are pushed M points past the
    threshold), W = WIDTH (softness, in score points), and prior_i is the hand-set score
    (a weak pull towards human judgement, so rare rules keep sensible values).
    Projected gradient descent (Adam) with box constraints: ordinary rules in
    [0, MAX_SCORE] (a spam sign never becomes a ham sign), `tflags nice` rules in
    [MIN_NICE, 0], sender-shape rules listed in RULE_CAPS capped lower; rules hit by fewer
    than MIN_HITS tuning messages keep their prior score.
 3. Round to 0.1, then check the false positives at tag on the tuning split; if there are
    more than FP_TARGET, raise HAM_COST and refit (up to a few rounds).
 4. Write rules/99-scores.cf: one `score NAME VALUE` line per rule (read last, so it
    overrides the hand-set scores in the themed files), with the fit's statistics in its
    header. A score of 0 disables a rule (it still feeds metas that use it).

Everything is deterministic: same corpus, same rules -> same scores.
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "rules")
CONFIG = os.path.join(ROOT, "config", "mxguard.toml")
BINARY = os.path.join(ROOT, "target", "release", "mxguard")
TARBALL = os.path.join(ROOT, "..", "shared", "corpus", "train.tar.gz")
SCORES_FILE = "99-scores.cf"

TAG = 5.0            # must match [policy] tag in config/mxguard.toml
MARGIN = 1.0         # push messages this far past the threshold
WIDTH = 1.0          # logistic softness, in score points
HAM_COST = 12.0        # initial weight of a ham message relative to a spam message (chosen by `cv`)
L2 = 0.02            # pull towards the hand-set prior score (per message-equivalent)
MAX_SCORE = 4.0      # cap for a single spam rule
MIN_NICE = -2.5      # floor for a single ham (nice) rule
MIN_HITS = 5         # rules hit less often than this keep their hand-set score
FP_TARGET = 0.002    # max fraction of tuning ham at or above tag
# Lower caps for rules that only describe the shape of a sender address: common on today's
# legitimate mail (digits in personal addresses, webmail, bare addresses), so never strong alone.
RULE_CAPS = {"FROM_LOCAL_DIGITS": 1.5, "FROM_FREEMAIL": 1.0, "FROM_NO_NAME": 1.0,
             "REPLYTO_FREEMAIL": 1.5, "SUBJ_YOUR": 1.0}
ITERATIONS = 3000
LEARNING_RATE = 0.05

# Experiments: any constant above can be overridden with TUNE_<NAME>=value in the environment.
for _k in ("MARGIN", "WIDTH", "HAM_COST", "L2", "MAX_SCORE", "MIN_NICE", "MIN_HITS", "FP_TARGET"):
    if "TUNE_" + _k in os.environ:
        globals()[_k] = type(globals()[_k])(os.environ["TUNE_" + _k])


def in_holdout(name):
    """The split rule: see the module docstring."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 4 == 0


def corpus_dir(arg):
    if arg:
        return os.path.abspath(arg)
    tmp = tempfile.mkdtemp(prefix="mxguard-corpus-")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(tmp)
    return tmp


def split_files(corpus):
    """{('tune'|'holdout', 'ham'|'spam'): [paths]} sorted by name."""
    out = {}
    for cls in ("ham", "spam"):
        d = os.path.join(corpus, "train", cls)
        for name in sorted(os.listdir(d)):
            part = "holdout" if in_holdout(name) else "tune"
            out.setdefault((part, cls), []).append(os.path.join(d, name))
    return out


def rule_table(rules_dir):
    """name -> {'prior': score, 'nice': bool} for every scored, reportable rule in the files."""
    defined, scores, nice = set(), {}, set()
    for fn in sorted(os.listdir(rules_dir)):
        if not fn.endswith(".cf") or fn == SCORES_FILE:
            continue
        for line in open(os.path.join(rules_dir, fn), encoding="utf-8", errors="replace"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            kind, name = parts[0], parts[1]
            if kind in ("header", "body", "rawbody", "uri", "full", "meta"):
                defined.add(name)
            elif kind == "score" and len(parts) >= 3:
                scores[name] = float(parts[2])
            elif kind == "tflags" and "nice" in parts[2:]:
                nice.add(name)
    return {
        n: {"prior": scores.get(n, -1.0 if n in nice else 1.0), "nice": n in nice}
        for n in sorted(defined)
        if not n.startswith("__") and scores.get(n, 1.0) != 0.0
    }


def scratch_config(rules_dir, workdir):
    """A copy of config/mxguard.toml whose rules_dir is `rules_dir`."""
    text = open(CONFIG, encoding="utf-8").read()
    text = re.sub(r'(?m)^rules_dir\s*=.*$', 'rules_dir = "%s"' % rules_dir, text)
    path = os.path.join(workdir, "mxguard.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def scan(config, files):
    """Runs `mxguard scan --json` and returns ({path: (score, [rules])}, stderr summary)."""
    results, summary = {}, ""
    for i in range(0, len(files), 1000):
        chunk = files[i:i + 1000]
        proc = subprocess.run([BINARY, "scan", "--config", config, "--json"] + chunk,
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode not in (0, 1):
            sys.exit("mxguard scan failed: %s" % proc.stderr[-2000:])
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                j = json.loads(line)
                results[j["file"]] = (j["score"], j["rules"])
        summary = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return results, summary


def hit_matrix(corpus, part, rules_dir, workdir):
    files = split_files(corpus)
    cfg = scratch_config(rules_dir, workdir)
    rows = []
    for cls in ("ham", "spam"):
        res, _ = scan(cfg, files[(part, cls)])
        for path in files[(part, cls)]:
            score, names = res[path]
            rows.append((os.path.basename(path), 1 if cls == "spam" else -1, set(names), score))
    return rows


def fit(rows, table, ham_cost):
    names = [n for n in table]
    index = {n: i for i, n in enumerate(names)}
    counts = [0] * len(names)
    groups = {}
    for _, y, hits, _ in rows:
        idx = tuple(sorted(index[h] for h in hits if h in index))
        for i in idx:
            counts[i] += 1
        groups[(y, idx)] = groups.get((y, idx), 0) + 1
    # Messages with the same class and the same hits are one weighted row.
    X = [(y, idx, k) for (y, idx), k in sorted(groups.items())]
    n_msgs = len(rows)
    prior = [table[n]["prior"] for n in names]
    frozen = [counts[i] < MIN_HITS for i in range(len(names))]
    lo = [MIN_NICE if table[n]["nice"] else 0.0 for n in names]
    hi = [0.0 if table[n]["nice"] else RULE_CAPS.get(n, MAX_SCORE) for n in names]
    w = [min(max(p, lo[i]), hi[i]) for i, p in enumerate(prior)]
    m = [0.0] * len(w)
    v = [0.0] * len(w)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for it in range(1, ITERATIONS + 1):
        g = [2.0 * L2 * (w[i] - prior[i]) for i in range(len(w))]
        for y, idx, k in X:
            s = sum(w[i] for i in idx)
            z = y * (s - TAG - y * MARGIN) / WIDTH
            # d/ds of c * log(1 + exp(-z)) = -c * y / W * sigmoid(-z)
            sig = 1.0 / (1.0 + math.exp(z)) if z > -50 else 1.0
            c = ham_cost if y < 0 else 1.0
            d = -k * c * y / WIDTH * sig / n_msgs * 100.0
            for i in idx:
                g[i] += d
        for i in range(len(w)):
            if frozen[i]:
                continue
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            mh = m[i] / (1 - b1 ** it)
            vh = v[i] / (1 - b2 ** it)
            w[i] -= LEARNING_RATE * mh / (math.sqrt(vh) + eps)
            w[i] = min(max(w[i], lo[i]), hi[i])
    scores = {n: round(w[i], 1) for i, n in enumerate(names)}
    return scores, dict(zip(names, counts)), dict(zip(names, frozen))


def metrics(rows, scores, thresholds):
    """Per threshold: (spam recall, ham FP rate, ham FP count) with the given scores."""
    ham = [sum(scores.get(h, 0.0) for h in hits) for _, y, hits, _ in rows if y < 0]
    spam = [sum(scores.get(h, 0.0) for h in hits) for _, y, hits, _ in rows if y > 0]
    out = {}
    for t in thresholds:
        fp = sum(1 for s in ham if s >= t)
        out[t] = (sum(1 for s in spam if s >= t) / len(spam), fp / len(ham), fp)
    return out, ham, spam


def policy_thresholds():
    text = open(CONFIG, encoding="utf-8").read()
    get = lambda k: float(re.search(r'(?m)^%s\s*=\s*([0-9.]+)' % k, text).group(1))
    return get("tag"), get("quarantine"), get("reject")


def write_scores(scores, counts, frozen, rows, table, report):
    lines = [
        "# mxguard default rules: fitted scores. GENERATED by benches/tune.py -- do not edit by hand;",
        "# change the rules or the hand-set priors in the themed files and re-run",
        "#     python3 benches/tune.py fit",
        "# Read last, so these lines override the hand-set scores written next to each rule.",
        "#",
        "# Fit on the tuning split (sha256(file name)[:8] % 4 != 0) of the training corpus:",
        "#   %d ham, %d spam messages; ham cost %.1f, margin %.1f, L2 %.3f, caps [%.1f, %.1f]"
        % (sum(1 for r in rows if r[1] < 0), sum(1 for r in rows if r[1] > 0),
           report["ham_cost"], MARGIN, L2, MIN_NICE, MAX_SCORE),
    ]
    for t, (rec, fpr, fp) in sorted(report["metrics"].items()):
        lines.append("#   threshold %5.1f: spam recall %5.1f %%, ham FP %.2f %% (%d)" % (t, rec * 100, fpr * 100, fp))
    lines.append("# Columns of the comment after each score: tuning-split hits (ham/spam), hand-set prior.")
    lines.append("")
    ham_hits = {n: 0 for n in table}
    spam_hits = {n: 0 for n in table}
    for _, y, hits, _ in rows:
        for h in hits:
            if h in table:
                (spam_hits if y > 0 else ham_hits)[h] += 1
    for n in sorted(table):
        note = "ham %d / spam %d, prior %.1f%s" % (ham_hits[n], spam_hits[n], table[n]["prior"],
                                                     ", too rare: prior kept" if frozen[n] else "")
        lines.append("score %-28s %5.1f   # %s" % (n, scores[n], note))
    with open(os.path.join(RULES, SCORES_FILE), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def fit_rounds(rows, table, thresholds, log=True):
    """Fit, and refit with a higher ham cost while tuning-split FP exceeds FP_TARGET."""
    ham_cost = HAM_COST
    for round_ in range(6):
        scores, counts, frozen = fit(rows, table, ham_cost)
        m, ham, _ = metrics(rows, scores, thresholds)
        if log:
            print("round %d: ham cost %.1f -> %s" % (round_, ham_cost, fmt_metrics(m)), file=sys.stderr)
        if m[thresholds[0]][1] <= FP_TARGET and max(ham) < thresholds[2] - 3:
            break
        ham_cost *= 1.6
    return scores, counts, frozen, ham_cost, m


def cmd_cv(args):
    """5-fold cross-validation on the tuning split (folds by sha256(name)[8:16] % 5):
    estimates how the fitted scores generalise without touching the holdout."""
    corpus = corpus_dir(args.corpus)
    work = tempfile.mkdtemp(prefix="mxguard-tune-")
    scratch = os.path.join(work, "rules")
    os.makedirs(scratch)
    for fn in os.listdir(RULES):
        if fn.endswith(".cf") and fn != SCORES_FILE:
            shutil.copy(os.path.join(RULES, fn), scratch)
    table = rule_table(scratch)
    rows = hit_matrix(corpus, "tune", scratch, work)
    thresholds = policy_thresholds()
    fold = lambda name: int(hashlib.sha256(name.encode()).hexdigest()[8:16], 16) % 5
    totals = {t: [0, 0, 0, 0] for t in thresholds}  # spam hit, spam n, ham fp, ham n
    for k in range(5):
        train = [r for r in rows if fold(r[0]) != k]
        test = [r for r in rows if fold(r[0]) == k]
        scores, _, _, _, _ = fit_rounds(train, table, thresholds, log=False)
        m, ham, spam = metrics(test, scores, thresholds)
        for t in thresholds:
            totals[t][0] += sum(1 for s in spam if s >= t)
            totals[t][1] += len(spam)
            totals[t][2] += sum(1 for s in ham if s >= t)
            totals[t][3] += len(ham)
        print("fold %d: %s" % (k, fmt_metrics(m)), file=sys.stderr)
    for t in thresholds:
        a, b, c, d = totals[t]
        print("cv score >= %5.1f: spam recall %5.1f %%   ham FP %5.2f %% (%d of %d)" % (t, a * 100 / b, c * 100 / d, c, d))
    shutil.rmtree(work)


def cmd_fit(args):
    corpus = corpus_dir(args.corpus)
    work = tempfile.mkdtemp(prefix="mxguard-tune-")
    scratch = os.path.join(work, "rules")
    os.makedirs(scratch)
    for fn in os.listdir(RULES):
        if fn.endswith(".cf") and fn != SCORES_FILE:
            shutil.copy(os.path.join(RULES, fn), scratch)
    table = rule_table(scratch)
    rows = hit_matrix(corpus, "tune", scratch, work)
    thresholds = policy_thresholds()
    scores, counts, frozen, ham_cost, m = fit_rounds(rows, table, thresholds)
    write_scores(scores, counts, frozen, rows, table, {"ham_cost": ham_cost, "metrics": m})
    shutil.rmtree(work)
    print("wrote rules/%s (%d rules)" % (SCORES_FILE, len(scores)), file=sys.stderr)


def fmt_metrics(m):
    return "; ".join("≥%g: recall %.1f%% FP %.2f%% (%d)" % (t, r * 100, f * 100, n) for t, (r, f, n) in sorted(m.items()))


def report_part(args, part):
    """Scores a split with the shipped config and rules (what `mxguard scan` really says)."""
    corpus = corpus_dir(args.corpus)
    files = split_files(corpus)
    thresholds = policy_thresholds()
    res = {}
    for cls in ("ham", "spam"):
        r, _ = scan(CONFIG, files[(part, cls)])
        res[cls] = [r[p] for p in files[(part, cls)]]
    print("%s split: %d ham, %d spam" % (part, len(res["ham"]), len(res["spam"])))
    for t in thresholds:
        rec = sum(1 for s, _ in res["spam"] if s >= t) / len(res["spam"])
        fp = sum(1 for s, _ in res["ham"] if s >= t)
        print("  score >= %5.1f: spam recall %5.1f %%   ham FP %5.2f %% (%d)" % (t, rec * 100, fp * 100 / len(res["ham"]), fp))
    if args.verbose:
        worst = sorted(zip(files[(part, "ham")], res["ham"]), key=lambda x: -x[1][0])[:10]
        print("highest-scoring ham:")
        for p, (s, rules) in worst:
            print("  %5.1f %s %s" % (s, os.path.basename(p), " ".join(rules)))
        missed = sorted(zip(files[(part, "spam")], res["spam"]), key=lambda x: x[1][0])[:10]
        print("lowest-scoring spam:")
        for p, (s, rules) in missed:
            print("  %5.1f %s %s" % (s, os.path.basename(p), " ".join(rules)))


def cmd_bench(args):
    corpus = corpus_dir(args.corpus)
    rates = []
    for _ in range(args.runs):
        proc = subprocess.run([BINARY, "scan", "--json", os.path.join(corpus, "train")],
                              capture_output=True, text=True, cwd=ROOT)
        m = re.search(r"\(([0-9.]+) msg/s", proc.stderr)
        rates.append(float(m.group(1)))
        print(proc.stderr.strip().splitlines()[-1])
    rates.sort()
    print("median scan rate: %.0f msg/s over %d runs" % (rates[len(rates) // 2], len(rates)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["fit", "cv", "eval", "holdout", "bench"])
    ap.add_argument("--corpus", help="unpacked corpus directory (holds train/ham, train/spam)")
    ap.add_argument("--runs", type=int, default=5, help="bench: number of runs")
    ap.add_argument("-v", "--verbose", action="store_true", help="eval/holdout: list worst messages")
    args = ap.parse_args()
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    if args.command == "fit":
        cmd_fit(args)
    elif args.command == "cv":
        cmd_cv(args)
    elif args.command == "eval":
        report_part(args, "tune")
    elif args.command == "holdout":
        report_part(args, "holdout")
    else:
        cmd_bench(args)


if __name__ == "__main__":
    main()
