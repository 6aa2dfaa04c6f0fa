//! HTML and URI shapes as SpamAssassin sees them: HTML rendered with its block breaks and
//! whitespace rules, and numeric IP hosts in their dotted form, so `body` and `uri` rules meet
//! the text SpamAssassin gives them.

use crate::mail::html::{script_or_style, text_only_element, ClosingTags};
use crate::mail::url::Link;
use mail_parser::decoders::html::html_to_text;
use std::borrow::Cow;

/// Tags that SpamAssassin renders as a paragraph break, opening and closing alike.
const PARAGRAPH_TAGS: &[&str] = &[
    "p",
    "hr",
    "blockquote",
    "pre",
    "listing",
    "plaintext",
    "xmp",
    "title",
];

/// Tags rendered as a line break.
const LINE_TAGS: &[&str] = &["br", "div"];

/// Tags rendered as a space.
const SPACE_TAGS: &[&str] = &[
    "li", "th", "td", "dd", "dt", "embed", "h1", "h2", "h3", "h4", "h5", "h6",
];

/// What was rendered last: SpamAssassin's whitespace rules look one piece back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    /// A text run (maybe emptied), and whether it ended in a space.
    Text {
        ends_in_space: bool,
    },
    /// The whitespace a block tag stands for.
    Break,
}

/// The rendered text, written into one string as it goes: a piece per run cost a small
/// allocation per stray `<`, about 57 times a part of them in memory.
struct Rendered {
    out: String,
    last: Last,
}

/// HTML rendered to text the way SpamAssassin's renderer does it, so `body` rules see the
/// same lines: block tags become line or paragraph breaks, `script`/`style` content and
/// comments vanish, entities are decoded, and whitespace is trimmed only where SpamAssassin
/// trims it (a text run right after a block break loses one leading space; a run after an
/// emptied run keeps it, which anchored rules such as `TRACKER_ID` notice).
pub(super) fn render_html(html: &str) -> String {
    let mut rendered = Rendered {
        out: String::with_capacity(html.len() / 2),
        last: Last::Nothing,
    };
    let mut skip_until: Option<&'static str> = None;
    let mut closing_tags = ClosingTags::default();
    let mut rest = html;
    while !rest.is_empty() {
        if let Some(end) = skip_until.take() {
            // Script and style content is raw text up to its closing tag.
            rest = match closing_tags.find(rest, end) {
                Some(at) => rest[at..].find('>').map_or("", |e| &rest[at + e + 1..]),
                None => "",
            };
            continue;
        }
        let Some(lt) = rest.find('<') else {
            push_text(&mut rendered, rest);
            break;
        };
        let (text, markup) = rest.split_at(lt);
        if !text.is_empty() {
            push_text(&mut rendered, text);
        }
        if let Some(after) = markup.strip_prefix("<!--") {
            rest = &after[crate::mail::html::comment_len(after)..];
            continue;
        }
        let tag = Tag::read(markup);
        let Some(tag) = tag else {
            // A `<` that opens no tag is text.
            push_text(&mut rendered, "<");
            rest = &markup[1..];
            continue;
        };
        rest = &markup[tag.len..];
        let name = tag.name.to_ascii_lowercase();
        if let Some(element) = script_or_style(&name).filter(|_| !tag.closing) {
            skip_until = Some(element);
            continue;
        }
        let ws = if PARAGRAPH_TAGS.contains(&name.as_str()) {
            Some("\n\n")
        } else if LINE_TAGS.contains(&name.as_str()) {
            Some("\n")
        } else if SPACE_TAGS.contains(&name.as_str()) {
            Some(" ")
        } else {
            None
        };
        if let Some(ws) = ws {
            if rendered.last
                == (Last::Text {
                    ends_in_space: true,
                })
            {
                rendered.out.pop();
            }
            rendered.out.push_str(ws);
            rendered.last = Last::Break;
        }
        // An element whose content is text up to its closing tag: no markup inside it is
        // markup (see `TEXT_ONLY_ELEMENTS`). One never closed is rendered as before: its
        // markup read as markup, not the rest of the part turned into text.
        let text_only = text_only_element(&name).filter(|_| !tag.closing);
        if let Some(end) = text_only.and_then(|element| closing_tags.find(rest, element)) {
            push_text(&mut rendered, &rest[..end]);
            rest = &rest[end..];
        }
    }
    rendered.out
}

/// Adds a text run: entities decoded, each whitespace run one space, and one leading space
/// dropped right after a block break.
fn push_text(rendered: &mut Rendered, raw: &str) {
    let decoded = decode_text_entities(raw);
    let start = rendered.out.len();
    // One leading space (a whitespace run's or a no-break space's) goes right after a
    // block break.
    let mut first = rendered.last == Last::Break;
    let mut push = |out: &mut String, c: char| {
        if std::mem::take(&mut first) && c == ' ' {
            return;
        }
        out.push(c);
    };
    let mut in_space = false;
    for c in decoded.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b') {
            if !in_space {
                push(&mut rendered.out, ' ');
            }
            in_space = true;
        } else if c == '\u{a0}' {
            push(&mut rendered.out, ' ');
            in_space = false;
        } else {
            push(&mut rendered.out, c);
            in_space = false;
        }
    }
    rendered.last = Last::Text {
        ends_in_space: rendered.out.len() > start && rendered.out.ends_with(' '),
    };
}

/// Named references whose text mail-parser's renderer would not hand back as such.
const BASIC_ENTITIES: &[(&str, char)] = &[
    ("amp", '&'),
    // A legacy name (read without its `;`) mail-parser does not know (review).
    ("AMP", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", '\u{a0}'),
];

/// Character references decoded, as in an attribute's value (a link's `?a=1&copyx=2`
/// keeps its parameter); unknown names are left as written.
pub fn decode_entities(raw: &str) -> Cow<'_, str> {
    decode(raw, true)
}

/// Character references decoded as in text, where HTML5 also reads a legacy name at the
/// start of a longer word (`&nbspViagra` shows a space and `Viagra`, `&copyright` shows
/// `©right`), as the classifier's renderer does.
fn decode_text_entities(raw: &str) -> Cow<'_, str> {
    decode(raw, false)
}

/// The named reference `name` (without `&` and `;`) as text, when it is one.
fn named_reference(name: &str) -> Option<String> {
    if let Some((_, c)) = BASIC_ENTITIES.iter().find(|(n, _)| *n == name) {
        return Some(c.to_string());
    }
    // mail-parser knows the named references.
    let text = html_to_text(&format!("&{name};"));
    (!text.is_empty() && !text.starts_with('&')).then_some(text)
}

fn decode(raw: &str, in_attribute: bool) -> Cow<'_, str> {
    if !raw.contains('&') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let (end, numeric) = match numeric_reference(after) {
            Some((len, value)) => (len, Some(value)),
            None => (
                after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
                    .unwrap_or(after.len()),
                None,
            ),
        };
        let name = &after[..end];
        let decoded = if let Some(value) = numeric {
            char::from_u32(value).map(String::from)
        } else if name.starts_with('#')
            || name.is_empty()
            || end > crate::mail::html::LONGEST_ENTITY_NAME
        {
            None
        } else {
            named_reference(name)
        };
        if let Some(d) = decoded {
            out.push_str(&d);
            rest = after[end..].strip_prefix(';').unwrap_or(&after[end..]);
            continue;
        }
        let legacy = crate::mail::html::legacy_reference(after, in_attribute)
            .and_then(|name| Some((named_reference(name)?, name.len())));
        match legacy {
            Some((d, used)) => {
                out.push_str(&d);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A numeric reference after its `&`: `#105` or `#x69`, its digits as far as they go, the
/// `;` optional as browsers and SpamAssassin read it (`V&#105agra` is "Viagra", and a link to
/// `spammer&#46test` opens `spammer.test`). Its length (without the `;`) and value.
fn numeric_reference(after: &str) -> Option<(usize, u32)> {
    let num = after.strip_prefix('#')?;
    let (digits, radix, prefix) = match num.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16, 2),
        None => (num, 10, 1),
    };
    let len = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if len == 0 {
        return None;
    }
    let value = u32::from_str_radix(&digits[..len], radix).ok()?;
    Some((prefix + len, value))
}

/// A tag at the start of some markup.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    /// Bytes up to and including the closing `>`.
    len: usize,
}

impl<'a> Tag<'a> {
    /// Reads `<name …>` or `</name …>` (and `<!…>` / `<?…>` as nameless tags); `None` when
    /// the `<` opens no tag.
    fn read(markup: &'a str) -> Option<Tag<'a>> {
        let body = markup.strip_prefix('<')?;
        let (closing, body) = match body.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, body),
        };
        let first = body.chars().next()?;
        if first == '!' || first == '?' {
            let len = markup.find('>').map_or(markup.len(), |e| e + 1);
            return Some(Tag {
                name: "",
                closing,
                len,
            });
        }
        if !first.is_ascii_alphabetic() {
            return None;
        }
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '-'))
            .unwrap_or(body.len());
        let name = &body[..name_len];
        let len = crate::mail::html::tag_end(markup.as_bytes()).map_or(markup.len(), |e| e + 1);
        Some(Tag { name, closing, len })
    }
}

/// The dotted-quad form of a URI whose host is an IPv4 address written otherwise: as one
/// number (`http://1071396130/`, `http://0x3fdc3522/`) or in dotted parts of hex, octal or
/// fewer than four (`http://0x42.0x2e.0221.0x23/`, `http://0102.056.0221.043/`), as a
/// browser opens it (WHATWG URL's IPv4 parser). SpamAssassin adds it to the URI list so
/// rules such as `NORMAL_HTTP_TO_IP` see the address (review: the dotted forms were left
/// out). `None` for any other URI, and for a host already written as the dotted quad.
pub(super) fn dotted_ip_form(uri: &str) -> Option<String> {
    let link = Link::parse(uri).filter(Link::is_web)?;
    let host = link.host.as_str();
    let ip = browser_ipv4(host)?;
    if ip.to_string() == host {
        return None;
    }
    let userinfo = link.userinfo.map(|u| u + "@").unwrap_or_default();
    let port = link.port.map(|p| ":".to_string() + &p).unwrap_or_default();
    Some(format!(
        "{}://{userinfo}{ip}{port}{}",
        link.scheme, link.tail
    ))
}

/// The IPv4 address a browser reads `host` as: one to four dot-separated numbers (a final
/// dot allowed), each decimal, octal (a leading `0`) or hex (`0x`); every part but the
/// last one byte, the last the remaining bytes.
fn browser_ipv4(host: &str) -> Option<std::net::Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let number = |part: &str| -> Option<u64> {
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            if hex.is_empty() {
                return Some(0);
            }
            return hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| u64::from_str_radix(hex, 16).ok())
                .flatten();
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match part.strip_prefix('0').filter(|rest| !rest.is_empty()) {
            Some(octal) => u64::from_str_radix(octal, 8).ok(),
            None => part.parse().ok(),
        }
    };
    let numbers: Vec<u64> = parts.iter().map(|p| number(p)).collect::<Option<_>>()?;
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bytes = 4 - first.len() as u32;
    if *last >= 1u64 << (8 * last_bytes) {
        return None;
    }
    let mut value = *last;
    for (i, &n) in first.iter().enumerate() {
        value |= n << (8 * (3 - i as u32));
    }
    Some(std::net::Ipv4Addr::from(u32::try_from(value).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_renders_as_spamassassin_does() {
        assert_eq!(
            render_html("a</P> <font>track</font><p align=c>b &amp; c&nbsp;d<div>e<br>f"),
            "a\n\ntrack\n\nb & c d\ne\nf"
        );
        // An emptied run after a break leaves the next run's leading space.
        assert_eq!(
            render_html("<P>&nbsp;</P>\n\n</BODY></HTML>\nid123"),
            "\n\n\n\n id123"
        );
        assert_eq!(
            render_html("<style>p{}</style>x<script>if (a<b) {}</script>y<!-- z -->w"),
            "xyw"
        );
        assert_eq!(
            render_html("1 < 2 &#65;&#x42;&eacute;&bogus;"),
            "1 < 2 ABé&bogus;"
        );
        assert_eq!(render_html("<param><pa>q"), "q");
        // Regression (review): a numeric reference without its `;` stayed literal, so
        // `V&#105agra` hid "Viagra" from body rules (browsers and SpamAssassin decode it).
        assert_eq!(
            render_html("Buy V&#105agra Vi&#x61gra &#;x &#xg"),
            "Buy Viagra Viagra &#;x &#xg"
        );
        // Regression (review): `<!-->` and `<!--->` are empty comments and `--!>` ends one
        // (HTML5), so what follows shows; it was read as a comment never closed, and body
        // rules saw nothing of the rest of the part.
        assert_eq!(render_html("a<!-->b<!--->c<!-- d --!>e"), "abce");
    }

    /// Regression: each element whose content is text (`<xmp>`, `<title>`, …) never closed
    /// searched the rest of the part for its closing tag (a megabyte of `<xmp>`: minutes
    /// of a worker's time). Such elements read as markup.
    #[test]
    fn many_text_elements_never_closed_render_as_markup() {
        for element in crate::mail::html::TEXT_ONLY_ELEMENTS {
            let html = format!("{}<p>shown", format!("<{element}>x").repeat(20_000));
            let text = render_html(&html);
            assert!(text.ends_with("shown"), "{element}");
            assert!(!text.contains('<'), "{element}");
            assert_eq!(text.matches('x').count(), 20_000, "{element}");
        }
    }

    /// Regression (review): each `<script>` or `<style>` lower-cased a copy of the rest of
    /// the part to find its end, so a part of many of them took quadratic time (400 KB:
    /// 18.7 s in a debug build). The end is found in place, in any case.
    #[test]
    fn script_and_style_end_at_their_closing_tag_in_any_case() {
        assert_eq!(
            crate::mail::html::find_closing_tag("a</b></SCRIPT >", "script"),
            Some(5)
        );
        assert_eq!(
            crate::mail::html::find_closing_tag("</scrip", "script"),
            None
        );
        assert_eq!(
            crate::mail::html::find_closing_tag("<script>", "script"),
            None
        );
        assert_eq!(
            render_html("<SCRIPT>x</ScRiPt >a<style>y</STYLE>b<script>never closed"),
            "ab"
        );
        let many = format!("{}x", "<script></script>".repeat(100_000));
        assert_eq!(render_html(&many), "x");
    }

    /// Regression (review): a `<!--` inside a title (or a textarea, xmp, iframe, noembed,
    /// noframes) is text to a browser, which closes the element and shows what follows;
    /// it was taken for a comment and hid the rest of the part from `body` rules.
    #[test]
    fn a_comment_opener_inside_a_text_only_element_hides_nothing() {
        let text = render_html("<title>h<!-- </title>Cheap viagra --><p>now");
        assert!(text.contains("Cheap viagra"), "{text:?}");
        assert_eq!(
            render_html("x<title>Hello</title>World"),
            "x\n\nHello\n\nWorld"
        );
        // Never closed: rendered as before, markup as markup.
        assert_eq!(render_html("<title>Hi<p>there"), "\n\nHi\n\nthere");
    }

    #[test]
    fn numeric_hosts_get_their_dotted_form() {
        assert_eq!(
            dotted_ip_form("http://1071396130/index2.htm").as_deref(),
            Some("http://63.220.53.34/index2.htm")
        );
        assert_eq!(
            dotted_ip_form("http://u@0x3fdc3522:81").as_deref(),
            Some("http://u@63.220.53.34:81")
        );
        assert_eq!(dotted_ip_form("http://example.test/1"), None);
        assert_eq!(dotted_ip_form("http://99999999999/"), None);
        assert_eq!(dotted_ip_form("mailto:1234@x.test"), None);
        // Regression (review): dotted parts in hex or octal, or fewer than four, as
        // browsers (and SpamAssassin) read them.
        for host in [
            "0x42.0x2e.0221.0x23",
            "0102.056.0221.043",
            "66.46.37155",
            "66.3051811",
            "66.46.145.35.",
        ] {
            assert_eq!(
                dotted_ip_form(&format!("http://{host}/x")).as_deref(),
                Some("http://66.46.145.35/x"),
                "{host}"
            );
        }
        assert_eq!(dotted_ip_form("http://66.46.145.35/x"), None, "already so");
        assert_eq!(dotted_ip_form("http://1.2.3.256/"), None);
        assert_eq!(dotted_ip_form("http://1.2.3.4.5/"), None);
        assert_eq!(
            dotted_ip_form("http://08.1.1.1/"),
            None,
            "8 is no octal digit"
        );
        assert_eq!(dotted_ip_form("http://1.example/"), None);
        // The host a browser opens, as the URIBL and the classifier read it.
        assert_eq!(
            dotted_ip_form("https:\\\\1071396130/x").as_deref(),
            Some("https://63.220.53.34/x")
        );
    }

    /// A `>` in a quoted attribute value does not end the tag: the value is not text
    /// (compared with `spamassassin -t` 4.0.1, whose body does not hold `QUOTED`).
    #[test]
    fn quoted_attribute_values_stay_in_their_tag() {
        assert_eq!(
            render_html(
                "<a title=\">QUOTED<\" href='http://x.test/?a>b'>z</a> <img alt = \"1 > 0\">w"
            ),
            "z w"
        );
        // An unclosed quote ends at the next `>` rather than hiding the rest.
        assert_eq!(render_html("<a href=\"x>visible"), "visible");
        // A quote that opens no value is an ordinary character.
        assert_eq!(render_html("<a b\"c>d\""), "d\"");
    }
}
