#!/usr/bin/env python3
"""Fit the scores of mxguard's default rules and classifier bands on the training corpus.

Python 3 standard library only. Run from the repository root after `cargo build --release`:

    python3 benches/tune.py fit      [--corpus DIR]  # fit rules + BAYES bands, write rules/99-scores.cf
    python3 benches/tune.py cv       [--corpus DIR]  # 5-fold CV: rules alone, classifier alone, both
            [--salt S | --split time]                # another digest split, or folds by time
    python3 benches/tune.py seed     [--corpus DIR]  # train the shipped classifier seed (all messages)
    python3 benches/tune.py eval     [--corpus DIR]  # score the whole corpus with the shipped config
    python3 benches/tune.py bench    [--corpus DIR]  # scan rate over the whole corpus (msg/s)

DIR is an unpacked copy of ../shared/corpus/train.tar.gz (it holds train/ham and train/spam);
by default the script unpacks the tarball to a temporary directory itself. Operators refit
their own scores by pointing --corpus at their own mail (train/ham, train/spam).

Folds (reproducible, duplicate-aware): a message's fold is int(sha256(body)[:8], 16) % 5, the
body being everything after the first empty line with CRLF read as LF. Messages with the same
body (the corpus has 131 such repeats) share a fold, so no test message has its twin in
training. `cv --salt S` makes another split the same way (sha256(S + body)): the figures
of a small corpus move with the split, so compare settings over a few. `cv --split time` puts
the oldest fifth of each group of messages (a class and the leading non-digit part of the
file names, e.g. easy-ham-, hard-ham-) in fold 0 and the newest in fold 4, by the date of the
topmost Received header: how the filter does on mail older or newer than all it learned.

How the classifier enters the fit: its probability for a message must come from a model that
did not learn that message, or the fit would trust it blindly. So `fit` and `cv` first compute
out-of-fold probabilities: for each fold, `mxguard learn` trains a fresh store on the other
four folds and `mxguard scan --json` reports the held-out fold (its rule hits and the
classifier's probability). The probability gives the BAYES_xx band (the same edges as the
gateway's), and the bands are features of the fit like rules.

The fit: one score per rule and band so that the message score s = sum(score_i * hit_i)
separates the classes around the tag threshold T (5.0): minimise
    sum_msgs  c_y * log(1 + exp(-y * (s - T - y*M) / W))  +  L2 * sum_i (score_i - prior_i)^2
with y = +1 for spam and -1 for ham, c_ham = HAM_COST (ham errors cost more: the target is
FP near zero), M = MARGIN, W = WIDTH, prior_i the hand-set score. Projected gradient descent
(Adam) with box constraints: ordinary rules in [0, MAX_SCORE], `tflags nice` rules in
[MIN_NICE, 0], capped rules (RULE_CAPS) lower, the bands in BAND_RANGE and kept monotone
(a higher band never scores less); rules hit by fewer than MIN_HITS messages keep their prior.
Scores are rounded to 0.1; while the training FP at tag exceeds FP_TARGET the ham cost is
raised and the fit repeated.

The shipped scores average BAGS such fits, each on a fixed share (BAG_SHARE) of the
messages, chosen by a digest of the file name and the fit's number (subsample bagging). One
fit moves a band by a point or more when two or three ham messages enter or leave its
training set; the average does not, and out of fold it gave fewer ham false positives at the
same recall on every split tried (README "The fit's constants").

`cv` reports, pooled over the five held-out folds, spam recall and ham false positives at the
thresholds for three policies, each fitted on the other four folds only: the rules alone, the
classifier alone (bands only, so the tag threshold is a probability cut) and both.
Everything is deterministic: same corpus, same rules -> same scores.
"""

import argparse
import email.utils
import hashlib
import json
import math
import multiprocessing
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
# MXGUARD_BIN: a copy of the binary, so a build during a long `cv` cannot change it midway.
BINARY = os.environ.get("MXGUARD_BIN") or os.path.join(ROOT, "target", "release", "mxguard")
TARBALL = os.path.join(ROOT, "..", "shared", "corpus", "train.tar.gz")
SEED = os.path.join(ROOT, "config", "classifier-seed.bin")
SCORES_FILE = "99-scores.cf"
FOLDS = 5

TAG = 5.0            # must match [policy] tag in config/mxguard.toml
MARGIN = 3.0         # push messages this far past the threshold
WIDTH = 1.0          # logistic softness, in score points
HAM_COST = 8.0       # initial weight of a ham message relative to a spam message
L2 = 0.02            # pull towards the hand-set prior score (per message-equivalent)
MAX_SCORE = 4.0      # cap for a single spam rule
MIN_NICE = -2.5      # floor for a single ham (nice) rule
MIN_HITS = 5         # rules hit less often than this keep their hand-set score
FP_TARGET = 0.001    # max fraction of training ham at or above tag
BAGS = 8             # fits averaged into the scores, each on a share of the messages
BAG_SHARE = 0.8      # share of the messages each of those fits sees
# Lower caps for rules that only describe the shape of a sender address: common on today's
# legitimate mail (digits in personal addresses, webmail, bare addresses), so never strong alone.
# RCVD_NUMERIC_HELO hits no training ham, which would let the fit give it 3.3, but it reads
# headers a sender writes and one misconfigured relay on a ham's path would carry it: 2 at
# most (the same recall and ranking over four splits as uncapped). The date symbols likewise:
# a client with a wrong clock is an honest mistake.
RULE_CAPS = {"FROM_LOCAL_DIGITS": 1.5, "FROM_FREEMAIL": 1.0, "FROM_NO_NAME": 1.0,
             "REPLYTO_FREEMAIL": 1.5, "SUBJ_YOUR": 1.0, "RCVD_NUMERIC_HELO": 2.0,
             "DATE_IN_FUTURE_03_12": 2.0, "DATE_IN_FUTURE_12_XX": 2.0, "DATE_IN_PAST_07D": 2.0,
             "FORGED_WEBMAIL_RCVD": 2.0, "MIME_QP_LONG_LINE": 1.5, "MIME_QP_NEEDLESS": 2.0}
# Built-in symbols (set by a check, scored in the rules files) that fire offline, on the
# corpus, and are fitted like rules.
FITTED_BUILTINS = {"DATE_IN_FUTURE_03_12", "DATE_IN_FUTURE_12_XX", "DATE_IN_PAST_07D",
                   "MIME_QP_LONG_LINE", "MIME_QP_NEEDLESS"}
# The classifier's bands (edges as in src/classify/bands.rs), priors and allowed ranges. The
# top of the range lets a band reach the tag threshold alone (out of fold no ham reaches
# p 0.99), but never quarantine: unseen kinds of ham can look like spam to the classifier,
# and a tag is the one action that loses nothing.
BANDS = [("BAYES_00", 0.0, 0.01, -1.5), ("BAYES_05", 0.01, 0.05, -0.5),
         ("BAYES_20", 0.05, 0.20, -0.1), ("BAYES_40", 0.20, 0.40, 0.1),
         ("BAYES_50", 0.40, 0.60, 0.5), ("BAYES_60", 0.60, 0.80, 1.0),
         ("BAYES_80", 0.80, 0.95, 2.0), ("BAYES_95", 0.95, 0.99, 3.0),
         ("BAYES_99", 0.99, 0.999, 3.5), ("BAYES_999", 0.999, 1.01, 4.0)]
BAND_RANGE = (-4.0, 5.5)
ITERATIONS = 3000
LEARNING_RATE = 0.05

# Experiments: any constant above can be overridden with TUNE_<NAME>=value in the environment.
for _k in ("MARGIN", "WIDTH", "HAM_COST", "L2", "MAX_SCORE", "MIN_NICE", "MIN_HITS", "FP_TARGET",
           "BAGS", "BAG_SHARE"):
    if "TUNE_" + _k in os.environ:
        globals()[_k] = type(globals()[_k])(os.environ["TUNE_" + _k])


def band_of(p):
    for name, lo, hi, _ in BANDS:
        if lo <= p < hi:
            return name
    return BANDS[-1][0]


def body_of(path):
    """The message's body, line ends made LF: what tells copies of one message apart."""
    raw = open(path, "rb").read()
    cut = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    body = raw[min(cut):] if cut else raw
    return body.lstrip(b"\r\n").replace(b"\r\n", b"\n")


def fold_of(path, salt=b""):
    """The message's fold: a hash of its body, so repeated bodies share a fold. A salt gives
    another split made the same way (to see how much a split moves the figures)."""
    return int(hashlib.sha256(salt + body_of(path)).hexdigest()[:8], 16) % FOLDS


def receipt_time(path):
    """When the message reached its mailbox: the date of its topmost Received header (the
    last hop writes it, so a sender cannot forge it), else its Date header; None if neither
    parses."""
    raw = open(path, "rb").read().decode("latin-1").replace("\r\n", "\n")
    header = raw.split("\n\n", 1)[0]
    fields = re.findall(r"^(Received|Date):(.*(?:\n[ \t].*)*)", header, re.M | re.I)
    received = [v for k, v in fields if k.lower() == "received" and ";" in v]
    dates = [v for k, v in fields if k.lower() == "date"]
    for text in received[:1] + dates[:1]:
        try:
            return email.utils.parsedate_to_datetime(text.rsplit(";", 1)[-1].strip()).timestamp()
        except (TypeError, ValueError, IndexError):
            continue
    return None


def time_folds(files):
    """Folds by receipt time, to see how the filter does on mail newer (or older) than all it
    learned: within each group of messages (a class, and the leading non-digit part of the
    file names, so easy-ham- and hard-ham- are split apart), the oldest fifth is fold 0 and
    the newest fold 4. A message with no readable date takes its group's median time. Copies
    of one body (a campaign sent again) all take the lowest of their folds (the oldest,
    within one group), so no test message has its twin among what the model learned
    (review: 41 copies crossed folds)."""
    groups = {}
    for path, cls in files:
        prefix = re.match(r"[^0-9]*", os.path.basename(path)).group(0)
        groups.setdefault((cls, prefix), []).append(path)
    folds = {}
    for paths in groups.values():
        times = {p: receipt_time(p) for p in paths}
        known = sorted(t for t in times.values() if t is not None)
        median = known[len(known) // 2] if known else 0.0
        ordered = sorted(paths, key=lambda p: (times[p] if times[p] is not None else median, p))
        for i, p in enumerate(ordered):
            folds[p] = i * FOLDS // len(ordered)
    first_of_body = {}
    for path, _ in files:
        digest = hashlib.sha256(body_of(path)).digest()
        first_of_body[digest] = min(first_of_body.get(digest, FOLDS), folds[path])
    for path, _ in files:
        folds[path] = first_of_body[hashlib.sha256(body_of(path)).digest()]
    return folds


def fold_map(files, split="digest", salt=""):
    """path -> fold for the chosen split: by body digest (optionally salted), or by time."""
    if split == "time":
        return time_folds(files)
    return {p: fold_of(p, salt.encode()) for p, _ in files}


def corpus_dir(arg):
    if arg:
        return os.path.abspath(arg)
    tmp = tempfile.mkdtemp(prefix="mxguard-corpus-")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(tmp)
    return tmp


def corpus_files(corpus):
    """[(path, 'ham'|'spam')] sorted by name."""
    out = []
    for cls in ("ham", "spam"):
        d = os.path.join(corpus, "train", cls)
        out += [(os.path.join(d, n), cls) for n in sorted(os.listdir(d))]
    return out


def rule_table(rules_dir):
    """name -> {'prior', 'lo', 'hi', 'band', 'nice'} for every scored, reportable rule, plus the
    bands ('nice': marked `tflags nice` in the themed files)."""
    defined, scores, nice = set(), {}, set()
    for fn in sorted(os.listdir(rules_dir)):
        if not fn.endswith(".cf") or fn == SCORES_FILE:
            continue
        for line in open(os.path.join(rules_dir, fn), encoding="utf-8", errors="replace"):
            parts = line.strip().split()
            if len(parts) < 2 or parts[0].startswith("#"):
                continue
            kind, name = parts[0], parts[1]
            if kind in ("header", "body", "rawbody", "uri", "full", "meta"):
                defined.add(name)
            elif kind == "describe" and name in FITTED_BUILTINS:
                defined.add(name)
            elif kind == "score" and len(parts) >= 3:
                scores[name] = float(parts[2])
            elif kind == "tflags" and "nice" in parts[2:]:
                nice.add(name)
    table = {}
    for n in sorted(defined):
        if n.startswith("__") or scores.get(n, 1.0) == 0.0:
            continue
        prior = scores.get(n, -1.0 if n in nice else 1.0)
        lo, hi = (MIN_NICE, 0.0) if n in nice else (0.0, RULE_CAPS.get(n, MAX_SCORE))
        table[n] = {"prior": prior, "lo": lo, "hi": hi, "band": False, "nice": n in nice}
    for name, _, _, prior in BANDS:
        table[name] = {"prior": prior, "lo": BAND_RANGE[0], "hi": BAND_RANGE[1], "band": True,
                       "nice": name in nice}
    return table


def write_config(path, rules_dir, spool, seed=None, enabled=True):
    """A copy of config/mxguard.toml with its own rules, spool (state store) and classifier."""
    text = open(CONFIG, encoding="utf-8").read()
    text = re.sub(r'(?m)^rules_dir\s*=.*$', 'rules_dir = "%s"' % rules_dir, text)
    text = re.sub(r'(?m)^dir\s*=\s*"var/spool".*$', 'dir = "%s"' % spool, text)
    text = re.sub(r'(?ms)^\[classifier\].*?(?=^\[|\Z)', '', text)
    text += "\n[classifier]\nenabled = %s\n" % ("true" if enabled else "false")
    if seed:
        text += 'seed = "%s"\n' % seed
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    # `mxguard learn` makes no spool: the gateway's first start would have.
    os.makedirs(spool, exist_ok=True)
    return path


def run(args):
    proc = subprocess.run([BINARY] + args, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode not in (0, 1):
        sys.exit("mxguard %s failed: %s" % (args[0], proc.stderr[-2000:]))
    return proc


def learn(args):
    """`mxguard learn`: exit 1 may only mean that some files were not messages; a learn
    with no summary line, one that learned nothing, or one with as many errors as messages
    ends the run (a fold trained on nothing would measure nothing)."""
    proc = run(["learn"] + args)
    if re.search(r"(?m)^(exported|imported) \d+ messages", proc.stdout):
        return proc
    summary = re.search(r"(?m)^\w+: (\d+) messages in [^:]*: (.*?); store: ", proc.stdout)
    errors = summary and re.search(r"(\d+) errors", summary.group(2))
    total = int(summary.group(1)) if summary else 0
    if not summary or total == 0 or (errors and int(errors.group(1)) >= total):
        sys.exit("mxguard learn %s failed: %s%s" % (" ".join(args), proc.stdout[-500:],
                                                    proc.stderr[-2000:]))
    return proc


def scan(config, files):
    """`mxguard scan --json`: {path: (score, [rules], classifier probability or None)}."""
    results = {}
    for i in range(0, len(files), 1000):
        proc = run(["scan", "--config", config, "--json"] + files[i:i + 1000])
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                j = json.loads(line)
                results[j["file"]] = (j["score"], j["rules"], j.get("classifier"), j.get("bayes"), j.get("lr"))
    return results


def scratch_rules(work):
    """The rules without the previous fit, so every rule hits with its hand-set score."""
    scratch = os.path.join(work, "rules")
    os.makedirs(scratch)
    for fn in os.listdir(RULES):
        if fn.endswith(".cf") and fn != SCORES_FILE:
            shutil.copy(os.path.join(RULES, fn), scratch)
    return scratch


def link_dir(dest, files):
    """A directory of the files for one `mxguard learn`: hard links (a copy across file
    systems), since the learn walk follows no symbolic link out of the directory named."""
    os.makedirs(dest)
    for f in files:
        target = os.path.join(dest, os.path.basename(f))
        try:
            os.link(f, target)
        except OSError:
            shutil.copyfile(f, target)
    return dest


def oof_rows(corpus, work, scratch, split="digest", salt=""):
    """Rows (name, y, rule hits, out-of-fold classifier probability, fold) of every message."""
    files = corpus_files(corpus)
    folds = fold_map(files, split, salt)
    rows = []
    for k in range(FOLDS):
        fdir = os.path.join(work, "fold%d" % k)
        os.makedirs(fdir)
        cfg = write_config(os.path.join(fdir, "mxguard.toml"), scratch, os.path.join(fdir, "spool"))
        for cls in ("spam", "ham"):
            train = link_dir(os.path.join(fdir, "train-" + cls),
                             [p for p, c in files if c == cls and folds[p] != k])
            learn(["--config", cfg, "--" + cls, train])
        test = [p for p, _ in files if folds[p] == k]
        res = scan(cfg, test)
        for p, cls in files:
            if folds[p] == k:
                score, rules, prob, bayes, lr = res[p]
                hits = set(r for r in rules if not r.startswith("BAYES_"))
                rows.append((os.path.basename(p), 1 if cls == "spam" else -1, hits, prob, k, bayes, lr))
        print("fold %d: classifier trained on %d, scanned %d" % (k, len(files) - len(test), len(test)),
              file=sys.stderr)
    return rows


def features(row, use_rules, use_bands):
    hits, prob = row[2], row[3]
    out = set(hits) if use_rules else set()
    if use_bands and prob is not None:
        out.add(band_of(prob))
    return out


def kept_prior(name, count, table):
    """Whether a rule hit `count` times is too rare to fit: it keeps its hand-set score. The
    bands are always fitted."""
    return count < MIN_HITS and not table[name]["band"]


def fit(rows, table, ham_cost, use_rules=True, use_bands=True):
    names = [n for n in table if (table[n]["band"] and use_bands) or (not table[n]["band"] and use_rules)]
    index = {n: i for i, n in enumerate(names)}
    counts = [0] * len(names)
    groups = {}
    for row in rows:
        idx = tuple(sorted(index[h] for h in features(row, use_rules, use_bands) if h in index))
        for i in idx:
            counts[i] += 1
        groups[(row[1], idx)] = groups.get((row[1], idx), 0) + 1
    # Messages with the same class and the same hits are one weighted row.
    X = [(y, idx, k) for (y, idx), k in sorted(groups.items())]
    n_msgs = len(rows)
    prior = [table[n]["prior"] for n in names]
    frozen = [kept_prior(n, counts[i], table) for i, n in enumerate(names)]
    lo = [table[n]["lo"] for n in names]
    # Alone, the bands must be able to reach the threshold (it becomes a probability cut).
    hi = [table[n]["hi"] if use_rules else 2 * TAG for n in names]
    bands = [index[b[0]] for b in BANDS if b[0] in index]
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
        monotone(w, bands)
    scores = {n: round(w[i], 1) for i, n in enumerate(names)}
    return scores


def monotone(w, order):
    """Pool-adjacent-violators: the band scores become non-decreasing with the probability."""
    blocks = []  # [sum, count]
    for i in order:
        blocks.append([w[i], 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    j = 0
    for s, c in blocks:
        for _ in range(c):
            w[order[j]] = s / c
            j += 1


def message_scores(rows, scores, use_rules=True, use_bands=True):
    # Rounded as the gateway rounds a message's score (src/policy/context.rs): a binary sum
    # of one-decimal scores can land just below a threshold it reads as, and the order of a
    # set's iteration (Python's string hashing) would then decide the verdict.
    return [(row[1], round(sum(scores.get(h, 0.0) for h in features(row, use_rules, use_bands)), 3))
            for row in rows]


def metrics(scored, thresholds):
    """Per threshold: (spam recall, ham FP rate, ham FP count)."""
    ham = [s for y, s in scored if y < 0]
    spam = [s for y, s in scored if y > 0]
    out = {}
    for t in thresholds:
        fp = sum(1 for s in ham if s >= t)
        out[t] = (sum(1 for s in spam if s >= t) / len(spam), fp / len(ham), fp)
    return out


def policy_thresholds():
    text = open(CONFIG, encoding="utf-8").read()
    get = lambda k: float(re.search(r'(?m)^%s\s*=\s*([0-9.]+)' % k, text).group(1))
    return get("tag"), get("quarantine"), get("reject")


def fit_rounds(rows, table, thresholds, use_rules=True, use_bands=True):
    """Fit, and refit with a higher ham cost while training FP at tag exceeds FP_TARGET.
    Returns the scores and the ham cost they were fitted with."""
    ham_cost = HAM_COST
    for _ in range(6):
        scores = fit(rows, table, ham_cost, use_rules, use_bands)
        scored = message_scores(rows, scores, use_rules, use_bands)
        m = metrics(scored, thresholds)
        worst_ham = max(s for y, s in scored if y < 0)
        if m[thresholds[0]][1] <= FP_TARGET and worst_ham < thresholds[2] - 3:
            break
        ham_cost *= 1.6
    return scores, ham_cost


def bag_member(name, bag):
    """Whether the message (its file name) is in the training share of fit number `bag`."""
    digest = hashlib.sha256(("%d:%s" % (bag, name)).encode()).digest()
    return int.from_bytes(digest[:8], "big") < BAG_SHARE * 2.0 ** 64


def _bag_fit(job):
    rows, table, thresholds, use_rules, use_bands, bag = job
    share = [r for r in rows if bag_member(r[0], bag)]
    return fit_rounds(share, table, thresholds, use_rules, use_bands)


def fit_bagged(rows, table, thresholds, use_rules, use_bands, pool):
    """The mean of BAGS fits on shares of `rows`, rounded to 0.1 (see the module doc), run
    in `pool`. Returns (scores, frozen, highest ham cost reached, metrics on all of `rows`)."""
    jobs = [(rows, table, thresholds, use_rules, use_bands, b) for b in range(BAGS)]
    fits = pool.map(_bag_fit, jobs)
    names = sorted(fits[0][0])
    # Each fit keeps its bands monotone, so their mean is monotone too.
    scores = {n: round(sum(f[0][n] for f in fits) / len(fits), 1) for n in names}
    counts = {n: 0 for n in names}
    for row in rows:
        for h in features(row, use_rules, use_bands):
            if h in counts:
                counts[h] += 1
    frozen = {n: kept_prior(n, counts[n], table) for n in names}
    m = metrics(message_scores(rows, scores, use_rules, use_bands), thresholds)
    return scores, frozen, max(f[1] for f in fits), m


def fmt_metrics(m):
    return "; ".join("≥%g: recall %.1f%% FP %.2f%% (%d)" % (t, r * 100, f * 100, n)
                     for t, (r, f, n) in sorted(m.items()))


def split_name(args):
    """How the folds are made, as the cv report and the --rows cache name it."""
    if args.split == "time":
        return "receipt time"
    return "body digest" + (" salted %r" % args.salt if args.salt else "")


def load_rows(args, work):
    """Out-of-fold rows, cached in --rows FILE when given (the folds take a few minutes). The
    cache names its split, so rows of one split are never read as another's."""
    if args.rows and os.path.exists(args.rows):
        data = json.load(open(args.rows))
        if data.get("split") != split_name(args):
            sys.exit("%s holds the rows of folds by %s, not %s: use another --rows file"
                     % (args.rows, data.get("split"), split_name(args)))
        return [(r[0], r[1], set(r[2])) + tuple(r[3:]) for r in data["rows"]]
    corpus = corpus_dir(args.corpus)
    rows = oof_rows(corpus, work, scratch_rules(work), args.split, args.salt)
    if args.rows:
        json.dump({"split": split_name(args),
                   "rows": [(r[0], r[1], sorted(r[2])) + tuple(r[3:]) for r in rows]},
                  open(args.rows, "w"))
    return rows


def cmd_cv(args):
    work = tempfile.mkdtemp(prefix="mxguard-tune-")
    rows = load_rows(args, work)
    table = rule_table(RULES)
    thresholds = policy_thresholds()
    n_ham = sum(1 for r in rows if r[1] < 0)
    n_spam = len(rows) - n_ham
    print("5-fold cross-validation over %d messages (%d ham, %d spam), folds by %s"
          % (len(rows), n_ham, n_spam, split_name(args)))
    for label, use_rules, use_bands in (("rules alone", True, False),
                                        ("classifier alone", False, True),
                                        ("rules + classifier", True, True)):
        pooled = []
        with multiprocessing.Pool() as pool:
            for k in range(FOLDS):
                train = [r for r in rows if r[4] != k]
                test = [r for r in rows if r[4] == k]
                scores, _, _, _ = fit_bagged(train, table, thresholds, use_rules, use_bands, pool)
                pooled += message_scores(test, scores, use_rules, use_bands)
        m = metrics(pooled, thresholds)
        for t in thresholds:
            rec, fpr, fp = m[t]
            print("  %-19s score >= %4.1f: spam recall %5.1f %%   ham FP %5.2f %% (%d of %d)"
                  % (label, t, rec * 100, fpr * 100, fp, n_ham))
    # The classifier's own probability, out of fold, at fixed cuts.
    probs = [(r[1], r[3]) for r in rows if r[3] is not None]
    ham = sorted((p for y, p in probs if y < 0), reverse=True)
    spam = [p for y, p in probs if y > 0]
    for cut in (0.5, 0.9, 0.99, 0.999):
        print("  classifier p >= %-6g: spam recall %5.1f %%   ham FP %5.2f %% (%d)"
              % (cut, 100 * sum(p >= cut for p in spam) / len(spam),
                 100 * sum(p >= cut for p in ham) / len(ham), sum(p >= cut for p in ham)))
    allowed = int(len(ham) * 0.001)
    cut = ham[allowed] if allowed < len(ham) else 1.0
    print("  classifier at <= 0.1 %% ham FP (%d of %d): spam recall %5.1f %%"
          % (allowed, len(ham), 100 * sum(p > cut for p in spam) / len(spam)))
    shutil.rmtree(work)


def write_scores(scores, frozen, rows, table, report):
    lines = [
        "# mxguard default rules: fitted scores. GENERATED by benches/tune.py -- do not edit by hand;",
        "# change the rules or the hand-set priors in the themed files and re-run",
        "#     python3 benches/tune.py fit",
        "# Read last, so these lines override the hand-set scores written next to each rule.",
        "#",
        "# Fit on all %d messages of the training corpus (%d ham, %d spam), the BAYES_xx bands"
        % (len(rows), sum(1 for r in rows if r[1] < 0), sum(1 for r in rows if r[1] > 0)),
        "# taken from out-of-fold classifier probabilities (5 folds by body digest); the mean",
        "# of %d fits, each on %d %% of the messages; highest ham cost %.1f, margin %.1f, L2 %.3f,"
        % (BAGS, round(BAG_SHARE * 100), report["ham_cost"], MARGIN, L2),
        "#   caps [%.1f, %.1f], bands [%.1f, %.1f]"
        % (MIN_NICE, MAX_SCORE, BAND_RANGE[0], BAND_RANGE[1]),
    ]
    for t, (rec, fpr, fp) in sorted(report["metrics"].items()):
        lines.append("#   threshold %5.1f on the fitted messages: spam recall %5.1f %%, ham FP %.2f %% (%d)"
                     % (t, rec * 100, fpr * 100, fp))
    lines.append("# Columns of the comment after each score: hits (ham/spam), hand-set prior.")
    lines.append("")
    ham_hits = {n: 0 for n in table}
    spam_hits = {n: 0 for n in table}
    for row in rows:
        for h in features(row, True, True):
            if h in table:
                (spam_hits if row[1] > 0 else ham_hits)[h] += 1
    for n in sorted(table):
        note = "ham %d / spam %d, prior %.1f%s" % (ham_hits[n], spam_hits[n], table[n]["prior"],
                                                     ", too rare: prior kept" if frozen[n] else "")
        lines.append("score %-28s %5.1f   # %s" % (n, scores[n], note))
        if scores[n] < 0 and not table[n]["nice"]:
            # The rules parser disables a negative score without `tflags nice` (a guard
            # against typos); a band the fit took below zero must be marked, or the gateway
            # would score it 0 while the fit and `cv` count it negative.
            lines.append("tflags %-27s nice    # fitted below zero" % n)
    with open(os.path.join(RULES, SCORES_FILE), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def cmd_fit(args):
    work = tempfile.mkdtemp(prefix="mxguard-tune-")
    rows = load_rows(args, work)
    table = rule_table(RULES)
    thresholds = policy_thresholds()
    with multiprocessing.Pool() as pool:
        scores, frozen, ham_cost, m = fit_bagged(rows, table, thresholds, True, True, pool)
    write_scores(scores, frozen, rows, table, {"ham_cost": ham_cost, "metrics": m})
    shutil.rmtree(work)
    print("wrote rules/%s (%d scores)" % (SCORES_FILE, len(scores)), file=sys.stderr)


def cmd_seed(args):
    """Learns every message into a fresh store and exports it as the shipped seed."""
    corpus = corpus_dir(args.corpus)
    work = tempfile.mkdtemp(prefix="mxguard-seed-")
    cfg = write_config(os.path.join(work, "mxguard.toml"), RULES, os.path.join(work, "spool"))
    for cls in ("spam", "ham"):
        print(learn(["--config", cfg, "--" + cls, os.path.join(corpus, "train", cls)]).stdout.strip())
    print(learn(["--config", cfg, "--export", SEED]).stdout.strip())
    shutil.rmtree(work)


def cmd_eval(args):
    """Scores the whole corpus with the shipped configuration (seed and scores trained on it:
    this is a check of the files, not an estimate of detection; use `cv` for that)."""
    corpus = corpus_dir(args.corpus)
    files = corpus_files(corpus)
    res = scan(CONFIG, [p for p, _ in files])
    scored = [(1 if c == "spam" else -1, res[p][0]) for p, c in files]
    print(fmt_metrics(metrics(scored, policy_thresholds())))


def cmd_bench(args):
    corpus = corpus_dir(args.corpus)
    rates = []
    for _ in range(args.runs):
        proc = run(["scan", "--json", os.path.join(corpus, "train")])
        rates.append(float(re.search(r"\(([0-9.]+) msg/s", proc.stderr).group(1)))
        print(proc.stderr.strip().splitlines()[-1])
    rates.sort()
    print("median scan rate: %.0f msg/s over %d runs" % (rates[len(rates) // 2], len(rates)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["fit", "cv", "seed", "eval", "bench"])
    ap.add_argument("--corpus", help="unpacked corpus directory (holds train/ham, train/spam)")
    ap.add_argument("--rows", help="fit/cv: cache of the out-of-fold rows (JSON), reused when present")
    ap.add_argument("--runs", type=int, default=5, help="bench: number of runs")
    ap.add_argument("--split", choices=["digest", "time"], default="digest",
                    help="cv: folds by body digest (default) or by receipt time, oldest to newest")
    ap.add_argument("--salt", default="", help="cv: salt the body digest for another split")
    args = ap.parse_args()
    if args.command != "cv" and (args.split != "digest" or args.salt):
        sys.exit("--split and --salt are for cv: the shipped scores are fitted on the digest folds")
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release")
    {"fit": cmd_fit, "cv": cmd_cv, "seed": cmd_seed, "eval": cmd_eval, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    main()
