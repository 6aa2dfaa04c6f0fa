//! Turns a message into the tokens the classifier learns from: body words (decoded text
//! parts, HTML rendered), prefixed header tokens (`headers.rs`) and URL tokens (`urls.rs`).
//!
//! Prefixes keep sources apart, as SpamBayes and SpamAssassin do: body words are bare,
//! `s:` Subject, `f:` From, `to:`/`cc:` recipients, `rcv:` Received, `xm:` mailer,
//! `ct:`/`mp:`/`cs:`/`cte:`/`bd:` MIME, `mid:` Message-ID, `u:` URLs, `e:` addresses in the
//! text, `a:` attachments, `m:` a few facts about the parse. Words are normalised against
//! obfuscation (`normalize.rs`). Collection artefacts a gateway never sees (`Delivered-To`,
//! `X-Keywords`, `X-Spam-*`, `Status`) are never read: only a fixed list of headers is;
//! nor are the Received hops from a mailbox fetch upward (`headers.rs`).
//!
//! Measured and left out (REPORT of the prototype): bigrams, layout "meta" features, HTML
//! tag names and Received host names all made the classifier worse on mail of a kind it had
//! not learned.

mod headers;
#[cfg(test)]
mod tests;
mod urls;

use super::features::{hash_str, Feature, Features, HashBuild};
use super::html;
use super::normalize::{deleet, fold_mixed_script, join_spaced_letters, normalize_text};
use crate::mail::render_kind::{render_kind, RenderKind};
use crate::mail::trace::Reading;
use crate::mail::{flowed, lenient};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

/// Whether a part's disposition says attachment: a client shows it as a file, not in
/// the message's view.
fn disposed_as_attachment(part: &mail_parser::MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
}

/// Distinct words kept per message: long bodies stay cheap. Only new words count, so
/// padding of repeated or dropped words cannot use it up; each text has its share (see
/// [`Tokenizer::read_words`]), read from both ends and sampled in between, so thousands of
/// new filler words before, around or in another part than the pitch cannot hide it.
const MAX_WORDS: usize = 5000;
/// Whitespace-separated chunks read per text at most: the bound on work when the text
/// repeats itself.
const MAX_CHUNKS: usize = 50_000;
/// Longest word kept whole; longer ones become `skip:` tokens.
const MAX_WORD_LEN: usize = 20;
/// URLs read per text, and links of a message's HTML parts: the first and the last halves.
const MAX_URLS: usize = 64;
/// URLs read per message, over all its texts and links (a text's limit alone let 300
/// parts of links add 56,000 tokens).
const MAX_MESSAGE_URLS: usize = 256;
/// Distinct hidden words read per HTML part (see [`Tokenizer::hidden_words`]).
const MAX_HIDDEN_WORDS: usize = 200;
/// Prefix of the words of a text no client shows beside one it does (see
/// [`Tokenizer::read_words`]).
const UNSHOWN: &str = "n:";
/// Addresses read per message.
const MAX_MESSAGE_ADDRESSES: usize = 128;
/// Distinct tokens kept per message, whatever their source: the bound on a ledger entry
/// (8 bytes a token) and on the counters one learn adds. Words, their variants, joined
/// letters, headers and URLs of real mail stay far below it.
const MAX_TOKENS: usize = 20_000;
/// Deepest attached message (`message/rfc822`) read.
const MAX_NESTING: usize = 3;

/// The links [`URL_RE`] finds in `text`, each cut after [`MAX_URL_TAIL`] characters
/// (`mailto:` after [`MAX_MAILTO_TAIL`]) and the search resumed where it was cut, as a
/// counted repetition in the pattern would read them.
fn capped_links<'t>(re: &'t Regex, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
    let mut at = 0;
    std::iter::from_fn(move || {
        let m = re.find_at(text, at)?;
        let found = m.as_str();
        let start_len = URL_START
            .as_ref()
            .and_then(|start| start.find(found))
            .map_or(0, |start| start.end());
        let cap = if found[..start_len].eq_ignore_ascii_case("mailto:") {
            MAX_MAILTO_TAIL
        } else {
            MAX_URL_TAIL
        };
        let end = found[start_len..]
            .char_indices()
            .nth(cap)
            .map_or(found.len(), |(i, _)| start_len + i);
        // An empty match cannot happen (every branch reads a character), but a search
        // that did not move would never end.
        at = (m.start() + end).max(at + 1);
        Some(&found[..end])
    })
}

/// The tokenizer: stateless; its regexes are compiled once per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokenizer;

static URL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    // ASCII word boundaries: a Unicode `\b` makes the lazy DFA give up on non-ASCII text.
    // The slashes after a scheme as a browser reads them (`http:\\`, `http:/`, none; link
    // probe), which `Link::parse` reads so too. Unbounded: the lengths a link is read to
    // ([`MAX_URL_TAIL`], [`MAX_MAILTO_TAIL`]) are applied by [`capped_links`], since a
    // counted repetition of a Unicode class is thousands of automaton states (`{1,2000}`
    // made this search 7 times slower, and its compilation 30 ms).
    Regex::new(
        r#"(?i)(?-u:\b)(?:(?:https?|ftp):[/\\]{0,3}[^\s<>"'`{}|\\^\[\]/]|www\.)[^\s<>"'`{}|^\[\]]+|(?-u:\b)mailto:[^\s<>"']{3,}"#,
    )
    .ok()
});

/// The start of a link [`URL_RE`] finds, before the characters that are capped.
static URL_START: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"^(?i)(?:(?:https?|ftp):[/\\]{0,3}[^\s<>"'`{}|\\^\[\]/]|www\.|mailto:)"#).ok()
});

/// Characters of a link read after its scheme and first host character (or `www.`).
const MAX_URL_TAIL: usize = 2000;
/// Characters of a `mailto:` link read after the scheme.
const MAX_MAILTO_TAIL: usize = 256;

static EMAIL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?-u:\b)[a-z0-9._%+\-]{1,64}@([a-z0-9\-]{1,63}(?:\.[a-z0-9\-]{1,63})+)(?-u:\b)",
    )
    .ok()
});

/// Log-scale bucket label for counts, so "37 URLs" and "41 URLs" share a token.
fn bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 => "2",
        3..=4 => "3-4",
        5..=8 => "5-8",
        9..=16 => "9-16",
        17..=32 => "17-32",
        33..=64 => "33-64",
        65..=256 => "65-256",
        _ => "257+",
    }
}

/// Character-class shape of an identifier: letters `a`, digits `9`, runs collapsed,
/// punctuation kept, at most `max` characters: `abc123.XY-9` → `a9.a-9`.
pub fn shape(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut last = '\0';
    for c in s.chars() {
        let k = if c.is_alphabetic() {
            'a'
        } else if c.is_ascii_digit() {
            '9'
        } else if c.is_whitespace() {
            '_'
        } else {
            c
        };
        if k != last || !(k == 'a' || k == '9') {
            if out.len() >= max {
                out.push('+');
                break;
            }
            out.push(k);
        }
        last = k;
    }
    out
}

/// Registrable domain (eTLD+1) of a host name, lower case; the host itself if unknown.
fn reg_domain(host: &str) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&h) {
        Some(d) => d.to_string(),
        None => h,
    }
}

/// Top-level label of a host name.
fn tld(host: &str) -> &str {
    host.trim_end_matches('.').rsplit('.').next().unwrap_or("")
}

/// The tokens of one message as they are found.
struct Sink {
    seen: HashSet<u64, HashBuild>,
    tokens: Vec<Feature>,
    word_count: usize,
    urls_left: usize,
    addresses_left: usize,
    /// The normalised texts of the message, whose words are read once all are known,
    /// each with whether a client shows it.
    texts: Vec<(String, bool)>,
    /// Whether the part being read is one a client shows (see [`Tokenizer::read_words`]).
    displayed: bool,
}

impl Sink {
    fn push(&mut self, name: String) {
        self.add(name);
    }

    /// Adds a token; true when it is new (false past [`MAX_TOKENS`]).
    fn add(&mut self, name: String) -> bool {
        if self.tokens.len() >= MAX_TOKENS {
            return false;
        }
        let h = hash_str(&name);
        let new = self.seen.insert(h);
        if new {
            self.tokens.push(Feature { hash: h, name });
        }
        new
    }

    fn push2(&mut self, prefix: &str, value: &str) {
        let mut token = String::with_capacity(prefix.len() + value.len());
        token.push_str(prefix);
        token.push_str(value);
        self.add(token);
    }
}

/// Appends `n` in decimal, without the formatting machinery.
fn push_number(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

impl Tokenizer {
    /// The tokens of raw RFC 5322 bytes collected elsewhere ([`Reading::Collected`]).
    pub fn features(&self, raw: &[u8]) -> Features {
        self.features_read(raw, Reading::Collected)
    }

    /// The tokens of raw RFC 5322 bytes read as `reading` says; unparsable input is read
    /// as plain text.
    pub fn features_read(&self, raw: &[u8], reading: Reading) -> Features {
        let mut sink = Sink {
            seen: HashSet::with_capacity_and_hasher(512, HashBuild::default()),
            tokens: Vec::with_capacity(512),
            word_count: 0,
            urls_left: MAX_MESSAGE_URLS,
            addresses_left: MAX_MESSAGE_ADDRESSES,
            texts: Vec::new(),
            displayed: true,
        };
        // The parts past the scan's default limit are not read: a parser's memory grows
        // with every part. The default, not `scan_mime_parts`: what a message's tokens are
        // must not change with a gateway's configuration, or learned counts stop matching.
        let (raw, _) = crate::mail::mime::cut_to_parts(raw, crate::mail::mime::DEFAULT_MAX_PARTS);
        let as_read = crate::mail::delimiters::as_clients_read(raw);
        // mail-parser's date parser ran past a one-letter zone into the next field, which
        // then gave no tokens (review).
        let parseable = crate::mail::header_fields::with_date_zones_padded(&as_read.bytes);
        match MessageParser::default().parse(&parseable) {
            Some(msg) => {
                self.header_features(&msg, &mut sink, reading);
                self.body_features(&msg, &mut sink, 0, true);
            }
            None => {
                sink.displayed = true;
                self.body_text(&String::from_utf8_lossy(raw), &mut sink);
            }
        }
        self.read_words(&mut sink);
        let mut tokens = sink.tokens;
        tokens.sort_unstable_by_key(|f| f.hash);
        Features { tokens }
    }

    /// The tokens of `msg`'s parts; `shown`: a client shows the message itself (the top
    /// one, or one attached inline).
    fn body_features(&self, msg: &Message<'_>, sink: &mut Sink, depth: usize, shown: bool) {
        let mut links: Vec<String> = Vec::new();
        for (idx, part) in msg.parts.iter().enumerate() {
            let ctype = part.content_type();
            let ct = ctype.map(|c| {
                format!(
                    "{}/{}",
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase()
                )
            });
            if depth == 0 {
                if let Some(ct) = &ct {
                    sink.push2(if idx == 0 { "ct:" } else { "mp:" }, ct);
                }
                if let Some(cs) = ctype.and_then(|c| c.attribute("charset")) {
                    sink.push2("cs:", &cs.to_ascii_lowercase());
                }
                if let Some(cte) = part.content_transfer_encoding() {
                    sink.push2("cte:", &cte.to_ascii_lowercase());
                }
                if let Some(b) = ctype.and_then(|c| c.attribute("boundary")) {
                    sink.push2("bd:", &shape(b, 16));
                }
            }
            // What a client shows of the message: its texts read their words first.
            sink.displayed = shown && u32::try_from(idx).is_ok_and(|i| msg.html_body.contains(&i));
            // Bodies the strict parser could not decode, read as SpamAssassin reads them.
            // Rendered as HTML as the rules render it (`text/html` without its `;`, a page
            // named `.html` whatever its label).
            let as_html = render_kind(msg, part) == RenderKind::Html;
            if let Some((text, is_html)) = lenient::repaired_text(msg, part) {
                sink.push("m:b64repaired".to_string());
                if is_html || as_html || looks_like_html(&text) {
                    self.html_text(&text, sink, &mut links);
                } else {
                    self.plain_text(part, &text, sink);
                }
                continue;
            }
            match &part.body {
                // 8-bit bytes that are not UTF-8 read as Windows-1252, as clients (and the
                // rules) read them: mail-parser's U+FFFD for each split `vi\xADagra` in two
                // (review).
                PartType::Text(t) | PartType::Html(t) => {
                    let text = lenient::text_as_clients_read(msg, part, t);
                    let html = matches!(part.body, PartType::Html(_))
                        || as_html
                        || ct.as_deref() == Some("text/html");
                    if html {
                        self.html_text(&text, sink, &mut links);
                    } else {
                        self.plain_text(part, &text, sink);
                    }
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => {
                    if self.signed_features(msg, part, idx, sink, depth, shown) {
                        continue;
                    }
                    // As the rules read it: a page named `.html`, a `.txt` file labelled
                    // `application/octet-stream`, a part whose first type is text.
                    match render_kind(msg, part) {
                        RenderKind::Html => {
                            let page = lenient::page_text(msg, part);
                            self.html_text(&page, sink, &mut links);
                        }
                        RenderKind::Plain => {
                            let text = lenient::page_text(msg, part);
                            self.plain_text(part, &text, sink);
                        }
                        RenderKind::RawOnly | RenderKind::Skipped => {}
                    }
                    if let Some(ct) = &ct {
                        sink.push2("a:ct:", ct);
                    }
                    if let Some(name) = part.attachment_name() {
                        let lower = name.to_ascii_lowercase();
                        if let Some((_, ext)) = lower.rsplit_once('.') {
                            if ext.len() <= 5 {
                                sink.push2("a:ext:", ext);
                            }
                        }
                    }
                }
                PartType::Message(inner) => {
                    sink.push("m:nested".to_string());
                    if depth < MAX_NESTING {
                        // Its own HTML view is shown only where the message itself is: an
                        // attached one is not (review: 450 attached messages of filler
                        // crowded out the shown part again).
                        let attached = disposed_as_attachment(part);
                        self.body_features(inner, sink, depth + 1, shown && !attached);
                    }
                }
                PartType::Multipart(_) => {}
            }
        }
        self.url_features(&links, sink);
    }

    /// The words of an opaque S/MIME signature's content, which clients show as the
    /// message (one attached beside the message's own text, as an attached message);
    /// whether `part` was one and its content read.
    fn signed_features(
        &self,
        msg: &Message<'_>,
        part: &mail_parser::MessagePart<'_>,
        idx: usize,
        sink: &mut Sink,
        depth: usize,
        shown: bool,
    ) -> bool {
        let Some(entity) = crate::mail::smime::entity_in_part(msg, part) else {
            return false;
        };
        sink.push("m:smime".to_string());
        if depth >= MAX_NESTING {
            return false;
        }
        // Bounded and delimited as the message itself is (review).
        let (bytes, _) =
            crate::mail::mime::cut_to_parts(&entity, crate::mail::mime::DEFAULT_MAX_PARTS);
        let as_read = crate::mail::delimiters::as_clients_read(bytes);
        let Some(inner) = MessageParser::default().parse(&as_read.bytes) else {
            return false;
        };
        // The message itself is one, whatever its disposition says (signers label it
        // `attachment; smime.p7m`).
        let attached = idx > 0 && disposed_as_attachment(part);
        self.body_features(&inner, sink, depth + 1, shown && !attached);
        true
    }

    /// A plain text's words; in `format=flowed; delsp=yes` text, words and links split at
    /// a soft break read whole, as shown (also when its body was repaired, review).
    fn plain_text(&self, part: &mail_parser::MessagePart<'_>, text: &str, sink: &mut Sink) {
        if flowed::deletes_soft_break_spaces(part) {
            self.body_text(&flowed::unflow_delsp(text), sink);
        } else {
            self.body_text(text, sink);
        }
    }

    fn html_text(&self, text: &str, sink: &mut Sink, links: &mut Vec<String>) {
        let rendered = html::render(text);
        self.body_text(&rendered.text, sink);
        self.hidden_words(&rendered.hidden, sink);
        links.extend(rendered.links);
    }

    /// The words of text a reader does not see, under `h:`: words hidden to make spam look
    /// like ham (a good-word attack) must not count as the ham words they copy. What is
    /// hidden, and how much, are tokens too (SpamAssassin's Bayes keeps invisible text
    /// apart the same way).
    fn hidden_words(&self, hidden: &str, sink: &mut Sink) {
        let norm = normalize_text(hidden);
        let mut count = 0;
        for w in words_in(&norm) {
            if count >= MAX_HIDDEN_WORDS {
                break;
            }
            if self.word(w, "h:", sink) {
                count += 1;
            }
        }
        if count > 0 {
            sink.push("m:hidden".to_string());
            sink.push2("m:hidden:", bucket(count));
        }
    }

    /// Tokenises decoded text: words, their de-obfuscated variants, URLs and addresses.
    fn body_text(&self, text: &str, sink: &mut Sink) {
        let norm = normalize_text(text);
        // Most texts have neither URLs nor addresses: a substring scan is cheaper than a
        // regex search.
        let maybe_url = ["http", "www.", "ftp", "mailto"]
            .iter()
            .any(|n| memchr::memmem::find(norm.as_bytes(), n.as_bytes()).is_some());
        if let Some(url_re) = URL_RE.as_ref().filter(|_| maybe_url) {
            let urls: Vec<String> =
                crate::mail::url::both_ends(capped_links(url_re, &norm), MAX_URLS)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
            self.url_features(&urls, sink);
        }
        if let Some(email_re) = EMAIL_RE.as_ref().filter(|_| norm.contains('@')) {
            for cap in email_re.captures_iter(&norm).take(32) {
                if sink.addresses_left == 0 {
                    break;
                }
                sink.addresses_left -= 1;
                if let Some(d) = cap.get(1) {
                    sink.push2("e:d:", &reg_domain(d.as_str()));
                }
            }
        }
        sink.texts.push((norm, sink.displayed));
    }

    /// Reads the words of every text of the message: first the texts a client shows, then
    /// the others (a `text/plain` twin no client shows, hidden alternatives), so that no
    /// number of hidden parts can crowd out the one that carries the pitch (review: 990
    /// hidden alternatives left the shown one five words). Within each group, each text
    /// has an equal share of the [`MAX_WORDS`] left when its turn comes (what one leaves
    /// goes to those after it), so a part of filler cannot use up the words of another.
    /// Within its share, half is read from both ends at once (spam puts its pitch first,
    /// or last), and the rest is a sample of the words in between, each taken or not by
    /// its hash, so that thousands of new filler words around the pitch leave some of it
    /// in the tokens: read in order, the middle of such a text was never reached (review).
    ///
    /// When some text is shown, the words of the others that the shown texts lack go under
    /// [`UNSHOWN`]: a `text/plain` twin or a `.txt` attachment of ham words beside an HTML
    /// pitch must not count as the ham words they copy (evasion probe: 500 ham words in
    /// the plain alternative of an HTML spam took 19 of 20 spam messages under `tag`). The
    /// words a twin shares with the page it copies stay plain: all of a twin apart read
    /// the newsletters' twins as spam's (multipart mail is mostly spam's in a learned
    /// corpus), and four ham messages reached p 0.99.
    fn read_words(&self, sink: &mut Sink) {
        let texts = std::mem::take(&mut sink.texts);
        let shown_words: Option<HashSet<&str>> =
            (texts.iter().any(|(_, d)| *d) && texts.iter().any(|(_, d)| !*d)).then(|| {
                texts
                    .iter()
                    .filter(|(_, d)| *d)
                    .flat_map(|(t, _)| head_and_tail_chunks(t))
                    .flat_map(words_in)
                    .collect()
            });
        for shown in [true, false] {
            let apart = if shown { None } else { shown_words.as_ref() };
            let group: Vec<&str> = texts
                .iter()
                .filter(|(_, d)| *d == shown)
                .map(|(t, _)| t.as_str())
                .collect();
            for (i, norm) in group.iter().enumerate() {
                let share = MAX_WORDS.saturating_sub(sink.word_count) / (group.len() - i);
                self.text_words(norm, share, apart, sink);
            }
        }
    }

    /// The words of one normalised text, at most `share` new ones; those not in `apart`,
    /// when given, under [`UNSHOWN`] (see [`Self::read_words`]).
    fn text_words(&self, norm: &str, share: usize, apart: Option<&HashSet<&str>>, sink: &mut Sink) {
        let prefix = |w: &str| match apart {
            Some(shown) if !shown.contains(w) => UNSHOWN,
            _ => "",
        };
        if share == 0 {
            // The limit is spent: splitting the text would find no room for a word.
            return;
        }
        let stop = sink.word_count + share;
        let ends = sink.word_count + share.div_ceil(2);
        let chunks = head_and_tail_chunks(norm);
        // Joined letters are words: they count against the word limit, and an endless
        // run of `a-b-c-d` chunks adds no more than plain words do.
        for joined in join_spaced_letters(norm, &chunks) {
            if sink.word_count >= ends {
                break;
            }
            if joined.chars().count() > MAX_WORD_LEN {
                continue;
            }
            sink.word_count += usize::from(self.word_variants(&joined, prefix(&joined), sink));
        }
        let order: Vec<&str> = from_both_ends(&chunks).collect();
        let mut read = 0;
        while read < order.len() && sink.word_count < ends {
            self.chunk_words(order[read], &prefix, sink, stop, |_| true);
            read += 1;
        }
        let middle = &order[read..];
        if middle.is_empty() || sink.word_count >= stop {
            return;
        }
        let distinct: HashSet<&str> = middle.iter().flat_map(|chunk| words_in(chunk)).collect();
        let rate = (stop - sink.word_count) as f64 / distinct.len().max(1) as f64;
        // A word's own hash decides, so a word is taken from every message or from none.
        let taken = |w: &str| rate >= 1.0 || (hash_str(w) as f64) < rate * u64::MAX as f64;
        for chunk in middle {
            if sink.word_count >= stop {
                break;
            }
            self.chunk_words(chunk, &prefix, sink, stop, taken);
        }
    }

    /// The words of one whitespace-separated chunk that `taken` accepts, each under its
    /// `prefix`, while fewer than `stop` words are counted.
    fn chunk_words(
        &self,
        chunk: &str,
        prefix: &dyn Fn(&str) -> &'static str,
        sink: &mut Sink,
        stop: usize,
        taken: impl Fn(&str) -> bool,
    ) {
        if chunk.contains("://") || chunk.starts_with("www.") || chunk.contains('@') {
            if !chunk.contains("://") && chunk.contains('@') {
                // Perhaps leet inside a word (`fr@ud`); addresses have a dot after '@'.
                if let Some(w) = deleet(trim_word(chunk)).filter(|w| taken(w)) {
                    self.word(&w, prefix(trim_word(chunk)), sink);
                }
            }
            return;
        }
        for w in words_in(chunk) {
            if sink.word_count >= stop {
                break;
            }
            if !taken(w) {
                continue;
            }
            sink.word_count += usize::from(self.word_variants(w, prefix(w), sink));
        }
    }

    /// A word and its de-obfuscated variants (leet digits, look-alike letters of another
    /// script, both) under `prefix`; true when any is new. Letter-spaced words joined
    /// (`p h 4 r m a`) take the same path: joined as they were, they kept their digits.
    fn word_variants(&self, w: &str, prefix: &str, sink: &mut Sink) -> bool {
        let mut new = false;
        if let Some(v) = deleet(w) {
            new |= self.word(&v, prefix, sink);
        }
        if let Some(v) = fold_mixed_script(w) {
            new |= self.word(&v, prefix, sink);
            // `v1аgra`: a look-alike and a digit in one word.
            if let Some(d) = deleet(&v) {
                new |= self.word(&d, prefix, sink);
            }
        }
        new | self.word(w.trim_end_matches(['!', '|', '+']), prefix, sink)
    }

    /// Emits one word under `prefix`: very short words are dropped, long ones become
    /// `skip:` tokens and long numbers `num:` tokens. True when the token is new.
    fn word(&self, w: &str, prefix: &str, sink: &mut Sink) -> bool {
        let len = w.chars().count();
        let body_word = prefix.is_empty() || prefix == UNSHOWN;
        if len < 2 || (len < 3 && body_word && !w.chars().all(|c| c.is_ascii_digit())) {
            return false;
        }
        // Built in one allocation: this runs for every word of every message.
        let mut token = String::with_capacity(prefix.len() + w.len().min(MAX_WORD_LEN * 4));
        token.push_str(prefix);
        if len > MAX_WORD_LEN {
            token.push_str("skip:");
            token.extend(w.chars().take(3));
            token.push(':');
            push_number(&mut token, len / 10 * 10);
        } else if len > 4
            && w.chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        {
            token.push_str("num:");
            push_number(&mut token, len);
        } else {
            token.push_str(w);
        }
        sink.add(token)
    }
}

/// The whitespace-separated chunks of `text`, at most [`MAX_CHUNKS`]: of a longer text half
/// from its start and half from its end, in order, so a text padded with repeated filler
/// (which uses up chunks, not new words) still shows its last words.
fn head_and_tail_chunks(text: &str) -> Vec<&str> {
    // In ASCII, Unicode's white space is ASCII's and the vertical tab: without one, the
    // byte-wise split gives the same chunks, faster.
    if text.is_ascii() && !text.as_bytes().contains(&0x0b) {
        return ends_of(text.split_ascii_whitespace());
    }
    ends_of(text.split_whitespace())
}

/// The first and last chunks of `all` (see [`head_and_tail_chunks`]).
fn ends_of<'a>(mut all: impl DoubleEndedIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut chunks: Vec<&str> = all.by_ref().take(MAX_CHUNKS / 2).collect();
    let mut tail: Vec<&str> = all.rev().take(MAX_CHUNKS - chunks.len()).collect();
    tail.reverse();
    chunks.extend(tail);
    chunks
}

/// The items of `all` taken alternately from the start and from the end: `a b c d e` as
/// `a e b d c`.
fn from_both_ends<'a, T: Copy>(all: &'a [T]) -> impl Iterator<Item = T> + 'a {
    let half = all.len().div_ceil(2);
    let (front, back) = all.split_at(half);
    let mut back = back.iter().rev();
    front
        .iter()
        .flat_map(move |&f| std::iter::once(f).chain(back.next().copied()))
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(2048)
        .collect::<String>()
        .to_ascii_lowercase();
    head.contains("<html") || head.contains("<body") || head.contains("<br") || head.contains("<p>")
}

/// Characters that may sit inside a word (leet symbols too, so `fr@ud` survives).
#[inline]
fn is_word_char(c: char) -> bool {
    // Asked of every character of every text: ASCII, the common case, without the
    // Unicode tables.
    if c.is_ascii() {
        return c.is_ascii_alphanumeric()
            || matches!(
                c,
                '\'' | '$' | '-' | '.' | '!' | '|' | '+' | '%' | '@' | '_'
            );
    }
    c.is_alphanumeric()
}

/// The words of `text`: the pieces between characters that cannot sit in a word, trimmed
/// of punctuation ([`trim_word`]), empty ones dropped.
fn words_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c))
        .map(trim_word)
        .filter(|w| !w.is_empty())
}

/// Strips leading and trailing punctuation, keeping a leading `$` and a trailing `%`.
fn trim_word(w: &str) -> &str {
    let w = w.trim_start_matches(|c: char| !c.is_alphanumeric() && c != '$');
    let w = w.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '%');
    if w.trim_start_matches('$').is_empty() {
        ""
    } else {
        w
    }
}
