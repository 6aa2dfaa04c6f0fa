#!/usr/bin/env bash
# Runs one fuzz target at the lowest CPU priority for a while, growing fuzz/corpus/TARGET.
#   fuzz/run.sh TARGET [SECONDS] [libFuzzer options...]
# Seeds come from fuzz/seeds/TARGET plus files of the repository (shipped rules, configs)
# and, for message_rules and classifier_tokens, up to 300 small messages of
# ../shared/corpus/train.tar.gz when it is there. Crashes land in fuzz/artifacts/TARGET/ (reproduce: cargo +nightly fuzz run
# TARGET FILE). The last line of the log, "Done N runs in S second(s)", is the execution
# count the README's table records.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS] [libFuzzer options...]}
secs=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))
corpus=corpus/$target
mkdir -p "$corpus"
cp -n "seeds/$target"/* "$corpus"/ 2>/dev/null || true
dict=
max_len=4096
build=()
case $target in
    smtp_command) dict=dict/smtp.dict; max_len=1024 ;;
    smtp_lines) dict=dict/smtp.dict; max_len=2048 ;;
    content_decoder) dict=dict/smtp.dict; max_len=8192 ;;
    reply_parse) dict=dict/reply.dict; max_len=8192 ;;
    proxy_header) dict=dict/proxy.dict; max_len=2200 ;;
    stamp_verify) dict=dict/mime.dict; max_len=8192 ;;
    audit_answers) dict=dict/audit.dict; max_len=8192 ;;
    attachment_archive) dict=dict/zip.dict; max_len=16384 ;;
    rules_parse)
        dict=dict/rules.dict; max_len=16384
        for f in ../rules/*.cf; do cp -n "$f" "$corpus/"; done ;;
    config_parse)
        dict=dict/toml.dict; max_len=8192
        for f in ../config/*.toml ../deploy/*.toml; do cp -n "$f" "$corpus/$(basename "$f")"; done ;;
    message_rules|classifier_tokens)
        dict=dict/mime.dict; max_len=65536
        # Built as shipped, without debug assertions: mail-parser 0.11.9 has a
        # debug_assert!(false) on some nested message/rfc822 parts that a release build
        # compiles out and parses past (fuzz/README.md), and it would end every run.
        build=(-O)
        train=../../shared/corpus/train.tar.gz
        if [ -f "$train" ] && [ ! -e "$corpus/.train-seeded" ]; then
            tmp=$(mktemp -d)
            tar -xzf "$train" -C "$tmp"
            find "$tmp" -name '*.eml' -size -16k | sort | awk 'NR % 13 == 0' | head -300 |
                while read -r f; do cp "$f" "$corpus/"; done
            rm -rf "$tmp"
            touch "$corpus/.train-seeded"
        fi ;;
esac
# The fuzz crate has its own target directory: it builds with sanitizer flags.
export CARGO_TARGET_DIR="$PWD/target"
nice -n 19 cargo +nightly fuzz run "${build[@]}" "$target" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
    -print_final_stats=1 ${dict:+-dict=$dict} "$@"
