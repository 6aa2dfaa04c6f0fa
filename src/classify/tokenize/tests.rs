//! Tokenizer tests: normalisation, URL and header tokens, lenient decoding, hostile input.

use super::*;

fn names(raw: &str) -> Vec<String> {
    Tokenizer
        .features(raw.as_bytes())
        .tokens
        .into_iter()
        .map(|t| t.name)
        .collect()
}

fn has(names: &[String], n: &str) -> bool {
    names.iter().any(|x| x == n)
}

#[test]
fn body_words_are_normalised() {
    let n = names(
        "From: \"Bob\" <bob@example.com>\r\nSubject: Hello there\r\n\r\nBuy V1AGRA and \
         Ci\u{200B}alis at the CAFÉ: v i a g r a now!\r\n",
    );
    for w in ["buy", "viagra", "v1agra", "cialis", "cafe", "now"] {
        assert!(has(&n, w), "missing {w} in {n:?}");
    }
    assert!(has(&n, "s:hello"));
    assert!(has(&n, "f:n:bob"));
    assert!(has(&n, "f:d:example.com"));
}

/// Regression (review): each of these read as a word of its own, never `viagra`: a
/// look-alike letter and a digit in one word, compatibility forms, HTML references the
/// short table lacked, and letter-spaced words touching punctuation.
#[test]
fn obfuscations_of_one_word_read_as_that_word() {
    for body in [
        "buy v1\u{430}gra",
        "buy v\u{1ECB}agra",
        "buy \u{1D42F}\u{1D422}\u{1D41A}\u{1D420}\u{1D42B}\u{1D41A}",
        "buy (v.i.a.g.r.a) today",
        "buy v i a g r a.",
    ] {
        let n = names(&format!("Subject: x\r\n\r\n{body}\r\n"));
        assert!(has(&n, "viagra"), "{body:?}: {n:?}");
    }
    let html = "Subject: x\r\nContent-Type: text/html\r\n\r\n\
<p>buy vi&ZeroWidthSpace;agra and c&Iacute;alis, v&shyiagra</p>\r\n";
    let n = names(html);
    assert!(has(&n, "viagra") && has(&n, "cialis"), "{n:?}");
    // The legacy reference without its `;` is an unseen soft hyphen, not a word of its own.
    assert!(!n.iter().any(|t| t.contains("shy")), "{n:?}");
}

#[test]
fn long_tokens_are_truncated_and_numbers_bucketed() {
    let n = names("Subject: x\r\n\r\nabcdefghijklmnopqrstuvwxyzabcdef 1234567 2002\r\n");
    assert!(has(&n, "skip:abc:30"), "{n:?}");
    assert!(has(&n, "num:7"));
    assert!(has(&n, "2002"));
}

#[test]
fn urls_give_host_domain_and_path_tokens() {
    let n = names(
        "Subject: x\r\nContent-Type: text/html\r\n\r\n<a href=\"http://WWW.Shop.Example.co.uk/cheap/pills.html?id=1\">\
         cl<b></b>ick</a> see http://192.168.0.1/x\r\n",
    );
    for t in [
        "u:h:www.shop.example.co.uk",
        "u:d:example.co.uk",
        "u:tld:uk",
        "u:p:cheap",
        "u:p:pills",
        "u:m:query",
        "u:ip",
        "click",
        "ct:text/html",
    ] {
        assert!(has(&n, t), "missing {t} in {n:?}");
    }
}

/// Regression (carried from the classifier review): only the first 64 links of a text
/// (and of an HTML part's links) were read, so 64 decoy links placed first hid the one
/// that carried the pitch. The first and the last halves are read.
#[test]
fn decoy_links_placed_first_do_not_hide_the_last() {
    let mut text = String::from("Subject: x\r\n\r\n");
    let mut html = String::from("Subject: x\r\nContent-Type: text/html\r\n\r\n");
    for i in 0..200 {
        text.push_str(&format!("http://decoy{i}.example/ "));
        html.push_str(&format!("<a href=\"http://decoy{i}.example/\">d</a>"));
    }
    text.push_str("http://pitch.spam.test/buy\r\n");
    html.push_str("<a href=\"http://pitch.spam.test/buy\">buy</a>\r\n");
    for raw in [text, html] {
        let n = names(&raw);
        assert!(has(&n, "u:h:pitch.spam.test"), "the last link unread");
        assert!(has(&n, "u:h:decoy0.example"), "the first link unread");
        let hosts = n.iter().filter(|t| t.starts_with("u:h:")).count();
        assert_eq!(hosts, MAX_URLS, "no more links read than before");
    }
}

/// Words a reader does not see are tokens of their own (`h:`), never the visible words
/// they copy: a good-word attack hides ham words to outweigh the pitch.
#[test]
fn hidden_words_do_not_pass_for_visible_ones() {
    let n = names(
        "Subject: x\r\nContent-Type: text/html\r\n\r\n<p>cheap pills</p>\
         <div style=\"display:none\">meeting agenda</div>\r\n",
    );
    for t in [
        "cheap",
        "pills",
        "h:meeting",
        "h:agenda",
        "m:hidden",
        "m:hidden:2",
    ] {
        assert!(has(&n, t), "missing {t} in {n:?}");
    }
    assert!(!has(&n, "meeting") && !has(&n, "agenda"), "{n:?}");
    let plain = names("Subject: x\r\nContent-Type: text/html\r\n\r\n<p>cheap pills</p>\r\n");
    assert!(!plain
        .iter()
        .any(|t| t.starts_with("h:") || t.starts_with("m:hidden")));
}

/// Regression (shared URL reader): the tokenizer split links its own way, so a link a
/// browser opens at `spam.example` (`http:\\spam.example`, `https:spam.example`) gave no
/// host token, and a scheme-less `www.` link with `://` in its query gave a junk scheme.
#[test]
fn links_give_the_host_a_browser_opens() {
    let n = names(
        "Subject: x\r\nContent-Type: text/html\r\n\r\n<a href=\"http:\\\\spam.example\\x\">a</a>\
         <a href=\"https:other.example/\">b</a> see www.shop.example/r?u=http://x.example\r\n",
    );
    for t in [
        "u:h:spam.example",
        "u:h:other.example",
        "u:h:www.shop.example",
    ] {
        assert!(has(&n, t), "missing {t} in {n:?}");
    }
    assert!(!n.iter().any(|t| t.starts_with("u:scheme:")), "{n:?}");
}

#[test]
fn broken_base64_is_decoded_leniently() {
    // The same lenient decoding as the rules' view (`mail::lenient`): a blank line before
    // the data and no closing boundary.
    let raw =
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
               --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\r\n\
               bW9ydGdhZ2UgcmF0ZXM=\r\n";
    let n = names(raw);
    assert!(has(&n, "mortgage"), "{n:?}");
    assert!(has(&n, "rates"), "{n:?}");
    assert!(has(&n, "m:b64repaired"), "{n:?}");
    // Regression (review): a page named `.html` in a binary part with a label mail-parser
    // does not act on (`base64;`) was tokenized still encoded.
    let raw = "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
               --b\r\nContent-Type: application/octet-stream; name=\"invoice.html\"\r\n\
               Content-Transfer-Encoding: base64;\r\n\r\n\
               PGh0bWw+PGJvZHk+QnV5IFZpYWdyYSBodHRwOi8vc3BhbS5leGFtcGxlLzwvYm9keT48L2h0bWw+\r\n--b--\r\n";
    let n = names(raw);
    assert!(has(&n, "viagra"), "{n:?}");
}

#[test]
fn collector_headers_are_ignored() {
    let n = names("Delivered-To: jm@example.org\r\nX-Keywords: spam\r\nSubject: x\r\n\r\nhi\r\n");
    assert!(
        n.iter()
            .all(|t| !t.contains("jm") && !t.contains("keywords")),
        "{n:?}"
    );
}

#[test]
fn received_chain_gives_shape_tokens() {
    let n = names(
        "Received: from pc123-45.dsl.example.net (pc123-45.dsl.example.net [192.0.2.1])\r\n\
         \tby mx.example.org with SMTP id x; Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: x\r\n\r\nhi\r\n",
    );
    assert!(has(&n, "rcv:n:1"), "{n:?}");
    assert!(has(&n, "rcv:rdns:dynamic"), "{n:?}");
}

#[test]
fn hostile_input_never_panics() {
    let mut nested = String::from("Content-Type: multipart/mixed; boundary=b0\r\n\r\n");
    for i in 1..40 {
        nested.push_str(&format!(
            "--b{}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n",
            i - 1
        ));
    }
    let long_line = format!("Subject: x\r\n\r\n{}\r\n", "\u{00e9}a".repeat(50_000));
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        (0u8..=255).cycle().take(10_000).collect(),
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n=?=?!!".to_vec(),
        b"Subject: =?x-unknown?B?////?=\r\nFrom: <@>\r\nReceived: from [\r\n\r\n<a href=\"http://[::1\">"
            .to_vec(),
        nested.into_bytes(),
        long_line.into_bytes(),
    ];
    for raw in inputs {
        let f = Tokenizer.features(&raw);
        assert!(
            f.tokens.windows(2).all(|w| w[0].hash < w[1].hash),
            "sorted and distinct"
        );
    }
}

#[test]
fn shapes_collapse_runs() {
    assert_eq!(shape("abc123.XY-9", 16), "a9.a-9");
    assert_eq!(shape("----=_NextPart_000_0001", 8), "----=_a_+");
}

#[test]
fn hops_from_the_mailbox_fetch_upward_are_not_read() {
    // Top to bottom: the recipient's local delivery, the IMAP fetch, the MX, the sender.
    let raw = "Received: from localhost (localhost [127.0.0.1]) by mailbox.example.net\r\n \
               (Postfix) with ESMTP id 1; Mon, 2 Dec 2002 23:55:10 +0000\r\n\
               Received: from imap.example.net [10.0.0.2] by localhost with IMAP\r\n \
               (fetchmail-5.9.0) for user@localhost (single-drop); Mon, 2 Dec 2002 23:55:10 +0000\r\n\
               Received: from sender (adsl-1-2-3-4.dsl.example.com [192.0.2.4])\r\n \
               by mx.example.net with SMTP id 2; Mon, 2 Dec 2002 23:52:14 +0000\r\n\
               Received: from client (client [10.1.1.1]) by sender with SMTP id 3;\r\n \
               Mon, 2 Dec 2002 23:51:00 +0000\r\n\
               Subject: x\r\n\r\nhello\r\n";
    let n = names(raw);
    assert!(!has(&n, "rcv:with:imap"), "{n:?}");
    assert!(!has(&n, "rcv:with:esmtp"), "{n:?}");
    assert!(has(&n, "rcv:with:smtp"), "{n:?}");
    assert!(has(&n, "rcv:rdns:dynamic"), "{n:?}");
    assert!(has(&n, "rcv:n:2"), "{n:?}");

    // Without a mailbox fetch every hop is transit.
    let direct = raw
        .split_once("Received: from sender")
        .map(|(_, rest)| rest)
        .unwrap_or("");
    let n = names(&format!("Received: from sender{direct}"));
    assert!(has(&n, "rcv:n:2"), "{n:?}");
}

/// Collected mail whose MX made its Message-ID reads as the gateway sees it: without one.
/// At the gateway the topmost hop is the client's, and its IDs are read as they are.
#[test]
fn a_message_id_the_mx_made_reads_as_none_in_collected_mail_only() {
    let raw = "Received: from imap.example.net [10.0.0.2] by localhost with IMAP\r\n \
               (fetchmail-5.9.0) for user@localhost; Mon, 2 Dec 2002 23:55:10 +0000\r\n\
               Received: from sender (sender.example.com [192.0.2.4])\r\n \
               by mx.example.net (8.11.6) with ESMTP id gB2NqEa21542; Mon, 2 Dec 2002 23:52:14 +0000\r\n\
               Message-Id: <200212022352.gB2NqEa21542@mx.example.net>\r\n\
               Subject: x\r\n\r\nhello\r\n";
    let read = |raw: &str, reading: Reading| -> Vec<String> {
        Tokenizer
            .features_read(raw.as_bytes(), reading)
            .tokens
            .into_iter()
            .map(|t| t.name)
            .collect()
    };
    let collected = read(raw, Reading::Collected);
    assert!(has(&collected, "mid:none"), "{collected:?}");
    assert!(
        !collected.iter().any(|t| t.starts_with("mid:d:")),
        "{collected:?}"
    );
    let at_the_gateway = read(raw, Reading::AtTheGateway);
    assert!(!has(&at_the_gateway, "mid:none"), "{at_the_gateway:?}");
    assert!(
        has(&at_the_gateway, "mid:d:example.net"),
        "{at_the_gateway:?}"
    );
    // The sender's own ID is read in both.
    let own = raw.replace("200212022352.gB2NqEa21542@mx", "3D48C4C1.CE967A1E@pc");
    assert!(!has(&read(&own, Reading::Collected), "mid:none"));
}

#[test]
fn the_word_cap_holds_inside_one_long_chunk() {
    // 20,000 distinct words joined by commas: one whitespace-free chunk.
    let words: Vec<String> = (0..20_000u32)
        .map(|mut i| {
            let mut w = String::new();
            for _ in 0..4 {
                w.push(char::from(b'a' + (i % 26) as u8));
                i /= 26;
            }
            w
        })
        .collect();
    let raw = format!("Subject: x\r\n\r\n{}\r\n", words.join(","));
    let n = Tokenizer.features(raw.as_bytes()).tokens.len();
    assert!(n <= MAX_WORDS + 100, "{n} tokens from one chunk");
}

/// Regression (review): every word counted towards the per-message cap, repeats and
/// words too short to keep included, so 5,000 `ab` at the top of a part (an HTML
/// `<title>` nobody sees) left the rest of the message without a single body token.
#[test]
fn padding_of_repeated_or_dropped_words_hides_nothing() {
    let padding = "ab xx ab ".repeat(4000);
    let n = names(&format!(
        "Subject: hi\r\nContent-Type: text/html\r\n\r\n<title>{padding}</title>\
         <p>cheap pills online</p>\r\n"
    ));
    for w in ["cheap", "pills", "online"] {
        assert!(has(&n, w), "missing {w}");
    }
}

/// Regression (review): every word of a Subject was a token, and a Subject may be as long
/// as the header section: one message brought a quarter of a million tokens (a 2 MB ledger
/// entry and as many counter updates when autolearned).
#[test]
fn a_subject_brings_a_subjects_worth_of_tokens() {
    let words: Vec<String> = (0..5000).map(|i| format!("word{i}")).collect();
    let n = names(&format!("Subject: {}\r\n\r\nbody\r\n", words.join(" ")));
    let subject_words = n
        .iter()
        .filter(|t| t.starts_with("s:") && !t.starts_with("s:m:"))
        .count();
    assert!(subject_words <= 64, "{subject_words} subject tokens");
    assert!(has(&n, "s:word0"));
}

/// Regression (review): joined letters, URLs (64 per text, 1,000 texts) and addresses
/// were not counted against any per-message limit: 972 KB of `a-b-c-d` chunks gave
/// 125,000 tokens, which one autolearn wrote to the ledger and the counters.
#[test]
fn every_kind_of_body_token_is_bounded_per_message() {
    let mut joined = String::from("Subject: x\r\n\r\n");
    for i in 0..60_000u32 {
        let [a, b, c, d] = i.to_le_bytes().map(|x| char::from(b'a' + x % 26));
        joined.push_str(&format!(
            "{a}-{b}-{c}-{d}-{} ",
            char::from(b'a' + (i / 7 % 26) as u8)
        ));
    }
    let n = Tokenizer.features(joined.as_bytes()).tokens.len();
    assert!(n <= MAX_WORDS + 100, "{n} tokens from joined letters");

    let mut parts = String::from(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
    );
    for p in 0..300 {
        parts.push_str("--b\r\nContent-Type: text/plain\r\n\r\n");
        for u in 0..64 {
            parts.push_str(&format!(
                "http://h{p}x{u}.example{p}.com/p{u}/q{p}?k{u}=v{p} a{p}x{u}@d{p}x{u}.example.org\r\n"
            ));
        }
    }
    parts.push_str("--b--\r\n");
    let n = Tokenizer.features(parts.as_bytes()).tokens.len();
    assert!(n <= MAX_TOKENS, "{n} tokens from links");
    assert!(
        n <= MAX_MESSAGE_URLS * 20 + MAX_MESSAGE_ADDRESSES * 2 + 1000,
        "{n} tokens from links"
    );
}

#[test]
fn chunks_are_read_from_both_ends() {
    let all = ["a", "b", "c", "d", "e"];
    assert_eq!(
        from_both_ends(&all).collect::<Vec<_>>(),
        vec!["a", "e", "b", "d", "c"]
    );
    assert_eq!(
        from_both_ends(&all[..4]).collect::<Vec<_>>(),
        vec!["a", "d", "b", "c"]
    );
    assert!(from_both_ends::<&str>(&[]).next().is_none());
}

#[test]
fn a_long_text_gives_its_first_and_last_chunks() {
    let short = "a b c";
    assert_eq!(head_and_tail_chunks(short), vec!["a", "b", "c"]);
    let words: Vec<String> = (0..MAX_CHUNKS + 10).map(|i| format!("w{i}")).collect();
    let long = words.join(" ");
    let chunks = head_and_tail_chunks(&long);
    assert_eq!(chunks.len(), MAX_CHUNKS);
    assert_eq!(chunks[0], "w0");
    assert_eq!(
        chunks[MAX_CHUNKS / 2 - 1],
        format!("w{}", MAX_CHUNKS / 2 - 1)
    );
    assert_eq!(chunks[MAX_CHUNKS / 2], format!("w{}", MAX_CHUNKS / 2 + 10));
    assert_eq!(chunks[MAX_CHUNKS - 1], format!("w{}", MAX_CHUNKS + 9));
}

/// Regression (review of this change): the chunks read were the first 50,000, so filler
/// repeated 50,000 times (using up chunks, not new words) still hid the pitch after it.
#[test]
fn repeated_filler_before_the_pitch_does_not_hide_it() {
    let raw = format!(
        "Subject: x\r\n\r\n{}\r\nviagra cialis\r\n",
        "filler ".repeat(60_000)
    );
    let n = names(&raw);
    assert!(has(&n, "viagra") && has(&n, "cialis"), "{n:?}");
}

/// Regression (review): only the first 5,000 new words of a message were kept, so 5,000
/// distinct filler words before the pitch (in hidden HTML, say) left the classifier
/// nothing of it.
#[test]
fn filler_words_before_the_pitch_do_not_hide_it() {
    let filler: Vec<String> = (0..6000).map(|i| format!("qz{i}x")).collect();
    let raw = format!(
        "Subject: x\r\n\r\n{}\r\nviagra cialis casino lottery\r\n",
        filler.join(" ")
    );
    let n = names(&raw);
    for w in ["viagra", "cialis", "casino", "lottery"] {
        assert!(has(&n, w), "{w}");
    }
}

/// Regression (review): reading from both ends did not reach the middle of a text, so the
/// pitch between 2,600 new filler words and 2,600 more left no word in the tokens; nor did
/// a part of filler (a `text/plain` twin no client shows) leave any word to the part that
/// carried the pitch. Each text has its share, and the middle of a long one is sampled.
#[test]
fn filler_around_the_pitch_or_in_another_part_does_not_hide_it() {
    let filler = |from: usize, n: usize| -> String {
        (from..from + n)
            .map(|i| format!("qz{i}x"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pitch: Vec<String> = (0..40).map(|i| format!("pitchword{i}")).collect();
    let raw = format!(
        "Subject: x\r\n\r\n{}\r\n{}\r\n{}\r\n",
        filler(0, 2600),
        pitch.join(" "),
        filler(2600, 2600)
    );
    let n = names(&raw);
    let kept = pitch.iter().filter(|w| has(&n, w)).count();
    assert!(kept >= 10, "{kept} of 40 pitch words kept");
    let twin = format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\n{}\r\n\
         --b\r\nContent-Type: text/html\r\n\r\n<html><body><p>{}</p></body></html>\r\n--b--\r\n",
        filler(0, 5200),
        pitch.join(" ")
    );
    let n = names(&twin);
    for w in &pitch {
        assert!(has(&n, w), "{w} missing behind the filler twin");
    }
    // Still at most the words of a message (the words as written, not their de-leeted
    // variants: the shown part reads first, so the twin has what it leaves).
    let as_written = |t: &&String| {
        t.strip_prefix("n:qz")
            .and_then(|t| t.strip_suffix('x'))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let words = n.iter().filter(as_written).count();
    assert!(words <= MAX_WORDS, "{words}");
    assert!(words > 4_000, "{words}");
}

/// The tokens of a mixed message whose shown HTML part holds the 40 words
/// `pitchword0`…`pitchword39`, followed by `parts` hidden parts, part `i` written by
/// `hidden(i, its ten filler words qz{i}x0…)`; and how many of the 40 shown words are
/// among the tokens.
fn shown_beside_hidden(
    parts: usize,
    hidden: impl Fn(usize, &str) -> String,
) -> (Vec<String>, usize) {
    let pitch: Vec<String> = (0..40).map(|i| format!("pitchword{i}")).collect();
    let mut raw = format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/html\r\n\r\n<html><body><p>{}</p></body></html>\r\n",
        pitch.join(" ")
    );
    for part in 0..parts {
        let filler: Vec<String> = (0..10).map(|w| format!("qz{part}x{w}")).collect();
        raw.push_str(&hidden(part, &filler.join(" ")));
    }
    raw.push_str("--b--\r\n");
    let n = names(&raw);
    let kept = pitch.iter().filter(|w| has(&n, w)).count();
    (n, kept)
}

/// Regression (review): every text had an equal share of the word limit, so 990 text
/// attachments of filler left the HTML part a client shows 5 of its words. The texts a
/// client shows read first.
#[test]
fn hidden_texts_cannot_crowd_out_the_shown_one() {
    let (n, kept) = shown_beside_hidden(990, |part, filler| {
        format!(
            "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"f{part}.txt\"\r\n\r\n{filler}\r\n"
        )
    });
    assert_eq!(kept, 40, "{kept} of 40 shown words kept");
    // The hidden texts still have what the shown one leaves, apart from its words.
    assert!(n.iter().filter(|t| t.starts_with("n:qz")).count() > 4_000);
    assert!(!n.iter().any(|t| t.starts_with("qz")));
}

/// Regression (evasion probe): the words of a part no client shows were read as the
/// shown ones, so 500 ham words in the `text/plain` twin of an HTML pitch took 19 of 20
/// spam messages under `tag`. They are kept apart, unless no text is shown at all.
#[test]
fn words_no_client_shows_are_kept_apart_from_the_shown_ones() {
    let twin = "Subject: x\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nmeeting agenda minutes\r\n\
        --b\r\nContent-Type: text/html\r\n\r\n<p>cheap pills online</p>\r\n--b--\r\n";
    let n = names(twin);
    for w in [
        "cheap",
        "pills",
        "online",
        "n:meeting",
        "n:agenda",
        "n:minutes",
    ] {
        assert!(has(&n, w), "{w} in {n:?}");
    }
    assert!(!has(&n, "meeting") && !has(&n, "n:cheap"), "{n:?}");
    // A message whose only text is an attachment: nothing is shown, its words count.
    let attached = "Subject: x\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n\
        meeting agenda minutes\r\n--b--\r\n";
    let n = names(attached);
    assert!(has(&n, "meeting") && !has(&n, "n:meeting"), "{n:?}");
}

/// Regression (review of this stop's diff): the texts of an attached message counted as
/// shown (mail-parser reads it as a message of its own), so 450 attached messages of
/// filler still left the shown part a few of its words.
#[test]
fn hidden_texts_in_attached_messages_cannot_crowd_out_the_shown_one() {
    let (_, kept) = shown_beside_hidden(450, |part, filler| {
        format!(
            "--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"f{part}.eml\"\r\n\r\n\
             Subject: f\r\n\r\n{filler}\r\n"
        )
    });
    assert_eq!(kept, 40, "{kept} of 40 shown words kept");
}

/// Regression (review): letter-spaced words were joined as written, without the leet and
/// look-alike folding plain words get: `p h 4 r m a w o r d` gave only `ph4rmaword`.
#[test]
fn letter_spaced_words_are_folded_like_plain_ones() {
    let n = names("Subject: p h 4 r m a w o r d\r\n\r\nBuy p h 4 r m a w o r d and p-h-\u{0430}-r-m-a-w-o-r-d\r\n");
    assert!(has(&n, "pharmaword"), "{n:?}");
    assert!(has(&n, "s:pharmaword"), "{n:?}");
}

/// Regression (review of the mail decoders): the tokens read what mail-parser made of the
/// message where clients (and the rules) read more: a subject word split by an encoded
/// word (`Vi=?utf-8?q?agra?=`), a soft hyphen sent as an undeclared 8-bit byte
/// (`vi\xADagra`, invisible in Windows-1252), `İ` lower-cased with a combining dot, and a
/// percent-escaped host (`spam%2Eexample`).
#[test]
fn tokens_read_what_clients_show() {
    let n = names("Subject: Cheap Vi=?utf-8?q?agra?=\r\n\r\nbody\r\n");
    assert!(has(&n, "s:viagra"), "{n:?}");
    // A raw Latin-1 subject is read as clients read it, not as none (review of the fix).
    let latin: Vec<String> = Tokenizer
        .features(b"Subject: Gro\xdfe Rabatte Viagra\r\n\r\nbody\r\n")
        .tokens
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(
        has(&latin, "s:viagra") && has(&latin, "s:rabatte"),
        "{latin:?}"
    );
    let n = names("Subject: s\r\n\r\nFREE V\u{130}AGRA\r\n");
    assert!(has(&n, "viagra"), "{n:?}");
    let raw = b"Subject: s\r\nContent-Type: text/plain\r\n\r\nBuy vi\xADagra now\r\n";
    let found: Vec<String> = Tokenizer
        .features(raw)
        .tokens
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(has(&found, "viagra"), "{found:?}");
    let n = names("Subject: s\r\nContent-Type: text/html\r\n\r\n<a href=\"http://spam%2Eexample/x\">go</a>\r\n");
    assert!(has(&n, "u:d:spam.example"), "{n:?}");
}

/// Regression (review): a `Date` with a one-letter zone took the next field into its value
/// in mail-parser's offsets: the Subject below it was no subject (`s:m:none`).
#[test]
fn a_date_with_a_short_zone_hides_no_subject() {
    let n =
        names("Date: Mon, 1 Jan 2024 00:00:00 Z\r\nSubject: FREE MONEY\r\n\r\nbody text here\r\n");
    assert!(has(&n, "s:free"), "{n:?}");
    assert!(has(&n, "s:money"), "{n:?}");
    assert!(!has(&n, "s:m:none"), "{n:?}");
    // Nor the fields the classifier reads through mail-parser's parse.
    let n =
        names("Date: Mon, 1 Jan 2024 00:00:00 Z\r\nFrom: \"Bob\" <bob@example.com>\r\n\r\nhi\r\n");
    assert!(has(&n, "f:d:example.com"), "{n:?}");
}

/// Regression (review): a part labelled `x-uuencode`, which Thunderbird decodes, gave the
/// classifier its encoded text.
#[test]
fn a_uuencoded_page_gives_its_words() {
    let page = b"<html><body><p>Cheap viagra pills <a href=\"http://spam.example/buy\">buy</a></p></body></html>\n";
    let encoded = String::from_utf8(uuencoding::encode(page, "page.html", 0o644)).unwrap();
    let n = names(&format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\
         Content-Transfer-Encoding: x-uuencode\r\n\r\n{encoded}"
    ));
    assert!(has(&n, "viagra"), "{n:?}");
}

/// `skip:` and `num:` tokens name lengths in decimal, as `format!` wrote them before.
#[test]
fn numbers_are_written_in_decimal() {
    for n in [0, 7, 10, 99, 100, 4_096, usize::MAX] {
        let mut out = String::from("x:");
        super::push_number(&mut out, n);
        assert_eq!(out, format!("x:{n}"));
    }
}

/// The ASCII split of [`super::head_and_tail_chunks`] gives the chunks Unicode's white
/// space gives: texts with every ASCII space, the vertical tab among them, and others.
#[test]
fn chunks_are_split_at_unicode_white_space() {
    fn reference(t: &str) -> Vec<&str> {
        super::ends_of(t.split_whitespace())
    }
    for text in [
        "a b\tc\nd\re\x0cf",
        "a\x0bb c",
        "  lead and trail  ",
        "x\u{a0}y z\u{2003}w",
        "\x1c\x1d\x1e\x1f are not blanks",
        "",
    ] {
        assert_eq!(
            super::head_and_tail_chunks(text),
            reference(text),
            "{text:?}"
        );
    }
    let long: String = (0..20_000).map(|i| format!("w{i}\x0c")).collect();
    assert_eq!(super::head_and_tail_chunks(&long), reference(&long));
}

/// The ASCII branch of [`super::is_word_char`] agrees with the Unicode one.
#[test]
fn word_characters_are_the_same_in_ascii() {
    for b in 0u8..=127 {
        let c = char::from(b);
        let unicode = c.is_alphanumeric()
            || matches!(
                c,
                '\'' | '$' | '-' | '.' | '!' | '|' | '+' | '%' | '@' | '_'
            );
        assert_eq!(super::is_word_char(c), unicode, "{c:?}");
    }
}

/// Regression (link evasion probe): a redirector's target, a scheme-relative link and a
/// host in Unicode forms a browser maps (an invisible character, full-width letters, an
/// ideographic full stop) gave no token of the spammer's domain.
#[test]
fn links_are_read_as_a_browser_follows_them() {
    for href in [
        "https://www.google.com/url?sa=http://decoy.test/&amp;q=http://spam.example/",
        "https://r.test/?to=http%3A%2F%2Fspam.example%2Foffer",
        "//spam.example/offer",
        "http://spa&ZeroWidthSpace;m.example/",
        "http://\u{ff53}pam.example/",
        "http://spam\u{3002}example/",
    ] {
        let raw = format!(
            "Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Hello <a href=\"{href}\">here</a></p>\r\n"
        );
        let n = names(&raw);
        assert!(has(&n, "u:d:spam.example"), "{href}: {n:?}");
    }
}

/// Regression (link evasion probe): in `format=flowed; delsp=yes` text a client joins the
/// lines at a soft break without a space, so a link or word split there reads whole on
/// screen; the tokenizer read the halves.
#[test]
fn flowed_text_that_deletes_its_soft_break_spaces_reads_joined() {
    let flowed = |delsp: &str| {
        names(&format!(
            "Subject: x\r\nContent-Type: text/plain; format=flowed; delsp={delsp}\r\n\r\n\
             Cheap vi \r\nagra at http://spam.exa \r\nmple/offer today\r\n"
        ))
    };
    let n = flowed("yes");
    assert!(has(&n, "viagra"), "{n:?}");
    assert!(has(&n, "u:d:spam.example"), "{n:?}");
    // Without delsp=yes the space stays on screen: two words, as written.
    let n = flowed("no");
    assert!(!has(&n, "viagra") && has(&n, "agra"), "{n:?}");
    // Regression (review): a body that needed repair (`"base64"`) was not joined.
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode("Cheap vi \r\nagra today\r\n");
    let n = names(&format!(
        "Subject: x\r\nContent-Type: text/plain; format=flowed; delsp=yes\r\n\
         Content-Transfer-Encoding: \"base64\"\r\n\r\n{data}\r\n"
    ));
    assert!(has(&n, "viagra"), "{n:?}");
}

/// Regression (link evasion probe): a browser follows an `href` after any number of other
/// attributes, a button's `formaction` and an inline SVG's `xlink:href`; none gave a token.
#[test]
fn every_link_a_browser_follows_in_markup_is_read() {
    let junk: String = (0..40).map(|n| format!(" data-x{n}=\"1\"")).collect();
    for markup in [
        format!("<a{junk} href=\"http://spam.example/\">here</a>"),
        "<form><button formaction=\"http://spam.example/go\">Go</button></form>".to_string(),
        "<svg><a xlink:href=\"http://spam.example/\"><text>here</text></a></svg>".to_string(),
    ] {
        let raw = format!("Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Hello {markup}</p>\r\n");
        let n = names(&raw);
        assert!(has(&n, "u:d:spam.example"), "{markup}: {n:?}");
    }
}

/// Regression (link evasion probe): a page's links were collected up to 256 and no more,
/// so 300 empty anchors ahead of the spammer's link left it no token. The first half and
/// the last are kept.
#[test]
fn anchors_padded_ahead_of_a_link_do_not_hide_it() {
    let padding: String = (0..300)
        .map(|n| format!("<a href=\"http://pad{n}.example/\"></a>"))
        .collect();
    let raw = format!(
        "Subject: x\r\nContent-Type: text/html\r\n\r\n<p>{padding}Buy \
         <a href=\"http://spam.example/\">here</a></p>\r\n"
    );
    let n = names(&raw);
    assert!(has(&n, "u:d:spam.example"), "{n:?}");
    assert!(has(&n, "u:d:pad0.example"), "{n:?}");
}

/// Regression (review): past a tag's 32nd attribute only links were read, so a `style`
/// there that hides ham words left them counted as shown; of two attributes of one name
/// both were read, where a browser keeps the first.
#[test]
fn attributes_a_browser_reads_count_wherever_they_stand() {
    let junk: String = (0..40).map(|n| format!(" data-x{n}=\"1\"")).collect();
    let raw = format!(
        "Subject: x\r\nContent-Type: text/html\r\n\r\n<p>Buy pills \
         <span{junk} style=\"display:none\">meeting agenda</span> \
         <a href=\"http://first.example/\" href=\"http://second.example/\">x</a></p>\r\n"
    );
    let n = names(&raw);
    assert!(has(&n, "h:agenda") && !has(&n, "agenda"), "{n:?}");
    assert!(
        has(&n, "u:d:first.example") && !has(&n, "u:d:second.example"),
        "{n:?}"
    );
}

/// Regression (header probe): the classifier read the last of two Subject fields (clients
/// show the first), and a From name in a charset mail-parser's table reads otherwise
/// (`hz-gb-2312`) as one U+FFFD.
#[test]
fn the_subject_and_from_name_clients_show_are_read() {
    let n = names(
        "Subject: Cheap pharmacy deals\r\nSubject: Meeting notes\r\n\
         From: =?hz-gb-2312?q?Casino_Deals?= <bob@example.org>\r\n\r\nhello\r\n",
    );
    assert!(has(&n, "s:pharmacy") && !has(&n, "s:meeting"), "{n:?}");
    assert!(has(&n, "f:n:casino") && has(&n, "f:n:deals"), "{n:?}");
}

/// Regression (link probe): `http:\\host\path` and one or no slash after the scheme,
/// which browsers open as `http://host/path`, gave no URL token.
#[test]
fn links_with_the_slashes_a_browser_forgives_give_their_host() {
    for link in [
        "http:\\\\spam-host.example\\offer",
        "http:/spam-host.example/offer",
        "https:spam-host.example/offer",
    ] {
        let n = names(&format!("Subject: s\r\n\r\nVisit {link} now\r\n"));
        assert!(has(&n, "u:d:spam-host.example"), "{link}: {n:?}");
    }
}

/// Regression (MIME probe): a `.txt` file labelled `application/octet-stream`, which
/// Thunderbird shows as text, gave the classifier no word, and a NUL decoded inside a word
/// split it in two.
#[test]
fn text_clients_show_from_lenient_mime_is_read() {
    let n = names(
        "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         hello zqx=00probeword\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"x.txt\"\r\n\r\n\
         cheap pharmacy\r\n--b--\r\n",
    );
    assert!(has(&n, "zqxprobeword"), "{n:?}");
    assert!(n.iter().any(|t| t.ends_with("pharmacy")), "{n:?}");
}

/// The links read with the lengths applied in code are those the counted pattern read
/// (`{1,2000}` after a link's start, `{3,256}` after `mailto:`), cut where it cut them
/// and the search resumed there, in any script.
#[test]
fn capped_links_read_what_a_counted_pattern_read() {
    let counted = Regex::new(
        r#"(?i)(?-u:\b)(?:(?:https?|ftp):[/\\]{0,3}[^\s<>"'`{}|\\^\[\]/]|www\.)[^\s<>"'`{}|^\[\]]{1,2000}|(?-u:\b)mailto:[^\s<>"']{3,256}"#,
    )
    .unwrap();
    let texts = [
        "see http://spam.example/offer and www.spam.example/x, mail mailto:a@b.example".to_string(),
        format!("go http://long.example/{} now", "a".repeat(2500)),
        format!(
            "go http://long.example/{}/http://next.example/ now",
            "é".repeat(1990)
        ),
        format!("go http:\\\\long.example/{}", "ж".repeat(4100)),
        format!("write mailto:{}@x.example then", "b".repeat(300)),
        format!("write mailto:{}http://after.example/", "c".repeat(256)),
        "访问http://spam.example/ 和 www.例子.example/路径 mailto:ab".to_string(),
        format!("{}www.{}", "x ".repeat(10), "w".repeat(2001)),
    ];
    let (Some(capped), Some(_)) = (URL_RE.as_ref(), URL_START.as_ref()) else {
        panic!("the link patterns compile");
    };
    for text in &texts {
        let expected: Vec<&str> = counted.find_iter(text).map(|m| m.as_str()).collect();
        let read: Vec<&str> = capped_links(capped, text).collect();
        assert_eq!(read, expected, "in {:.60}…", text);
    }
}

/// An opaque-signed S/MIME message is read as clients show it, its signed content's words
/// among the shown ones (the fixtures: OpenSSL's DER and streamed BER).
#[test]
fn the_words_of_an_opaque_signed_message_are_read() {
    for signed in [
        include_str!("../../../tests/data/smime/signed-der.eml"),
        include_str!("../../../tests/data/smime/signed-ber.eml"),
    ] {
        let n = names(signed);
        assert!(has(&n, "m:smime"), "{n:?}");
        assert!(has(&n, "invoice") && has(&n, "attached"), "{n:?}");
    }
}
