//! HTML rendered to the text a reader would see, plus the links it points to, for the
//! classifier's tokenizer.
//!
//! A tolerant single-pass scanner, not a full HTML parser: it never fails, runs in linear
//! time and treats malformed markup as text. Unlike the rules' rendering it joins inline
//! elements and drops comments without a space, so `vi<b></b>ag<!-- x -->ra` reads
//! `viagra`, as a mail client shows it. Text a reader does not see goes apart
//! ([`HtmlRender::hidden`]).

use super::html_sheet::StyleSheet;
use super::html_style::{look, same_colour, Look, Rgb};
use super::normalize::{OVERRIDE, POP_OVERRIDE};
use crate::mail::html::{script_or_style, text_only_element, ClosingTags};

/// What rendering one HTML body produced.
#[derive(Debug, Default, Clone)]
pub struct HtmlRender {
    /// Visible text: tags removed, entities decoded, block elements separated by spaces and
    /// inline elements joined.
    pub text: String,
    /// Targets of `href`, `src` (frames, scripts), `action` and `background` attributes.
    pub links: Vec<String>,
    /// Text a reader does not see (see [`super::html_style`]): hidden words meant to make
    /// spam look like ham, kept apart from the visible ones.
    pub hidden: String,
}

/// Elements that never hold content: they open nothing on the stack of styles.
fn is_void(tag: &str) -> bool {
    matches!(
        tag,
        "br" | "img"
            | "hr"
            | "input"
            | "meta"
            | "link"
            | "wbr"
            | "col"
            | "area"
            | "base"
            | "param"
            | "source"
            | "track"
            | "embed"
            | "frame"
            | "keygen"
    )
}

/// Links collected from one page: the first half of them and the last (see [`Links`]).
const MAX_LINKS: usize = 256;

/// A page's links as they are found: the first half of [`MAX_LINKS`] and the latest
/// others. The link that carries a pitch comes first or last, and anchors padded ahead of
/// it must not push it out (link evasion probe: 300 empty anchors before the spammer's
/// link left it no token).
type Links = crate::mail::url::BothEnds<String>;

/// Deepest nesting of elements followed for their styles; deeper ones inherit.
const MAX_DEPTH: usize = 256;

/// One open element's effect on how its text looks.
#[derive(Debug)]
struct Frame {
    name: String,
    /// Hidden whatever its descendants say (`display:none`… here or above).
    hides: bool,
    /// `visibility:hidden` in force (its own or inherited).
    invisible: bool,
    /// A font too small to read in force (its own or inherited).
    tiny: bool,
    fg: Rgb,
    /// A see-through text colour in force (its own or inherited).
    clear: bool,
    /// `None` when unknown (an image, a colour not understood).
    bg: Option<Rgb>,
    /// Whether it is laid out as a block: its start and end break words.
    block: bool,
}

/// The open elements, for whether the text at hand is seen.
#[derive(Debug, Default)]
struct Styles {
    stack: Vec<Frame>,
    /// How many of each of [`IMPLIED`] are open: a start tag that closes one none of
    /// which is open scans nothing (review: 256 open `<span>`s and then a megabyte of
    /// `<div>`s scanned the whole stack at each).
    implied_open: [usize; IMPLIED.len()],
    /// Whether the last text went to the hidden text.
    last_hidden: bool,
    /// The page's background outside every element: white, or unknown when a style
    /// sheet may set it (see [`StyleSheet::paints_background`]).
    page: Option<Rgb>,
    /// A right-to-left override may be open in the text (see [`break_words`]).
    override_open: bool,
}

impl Styles {
    fn fg(&self) -> Rgb {
        self.stack.last().map_or((0, 0, 0), |f| f.fg)
    }

    fn bg(&self) -> Option<Rgb> {
        self.stack.last().map_or(self.page, |f| f.bg)
    }

    /// Whether text written now is hidden from a reader.
    fn hidden(&self) -> bool {
        self.stack
            .last()
            .is_some_and(|f| f.hides || f.invisible || f.tiny || f.clear)
            || self.bg().is_some_and(|bg| same_colour(self.fg(), bg))
    }

    /// Whether closing `name` ends a block: the innermost open one's display, or the
    /// element's own when none is open.
    fn closes_block(&self, name: &str) -> bool {
        self.stack
            .iter()
            .rfind(|f| f.name == name)
            .map_or(is_block(name), |f| f.block)
    }

    fn open(&mut self, name: &str, look: Look, block: bool) {
        if self.stack.len() >= MAX_DEPTH {
            return;
        }
        let parent = self.stack.last();
        let frame = Frame {
            name: name.to_string(),
            hides: look.hides || parent.is_some_and(|f| f.hides),
            invisible: look
                .invisible
                .unwrap_or(parent.is_some_and(|f| f.invisible)),
            tiny: look.tiny.unwrap_or(parent.is_some_and(|f| f.tiny)),
            fg: look.color.unwrap_or(self.fg()),
            clear: look.clear.unwrap_or(parent.is_some_and(|f| f.clear)),
            bg: look.background.unwrap_or(self.bg()),
            block,
        };
        self.count(&frame, 1);
        self.stack.push(frame);
    }

    /// Counts `frame` opened (`1`) or closed (`-1`) among the [`IMPLIED`] ones.
    fn count(&mut self, frame: &Frame, sign: isize) {
        if let Some(i) = IMPLIED.iter().position(|n| *n == frame.name) {
            self.implied_open[i] = self.implied_open[i].wrapping_add_signed(sign);
        }
    }

    /// Closes the frames from `at` up.
    fn drain_from(&mut self, at: usize) {
        for frame in self.stack.split_off(at) {
            self.count(&frame, -1);
        }
    }

    /// Closes what opening `name` closes in a browser though its end tag is missing: a
    /// cell the next cell, a row the next row, an item the next item, a paragraph the
    /// next or any block (a `<div>`, `<table>`, heading, list…). Else a cell's background
    /// ran on into every later cell of the table, and a hidden `<p>` hid the blocks after
    /// it that a browser shows (review).
    fn close_implied_by(&mut self, name: &str) {
        if CLOSES_P.contains(&name) {
            self.close_within(&["p"], &["div", "td", "th", "table", "body", "caption"]);
        }
        let (closes, within): (&[&str], &[&str]) = match name {
            "td" | "th" => (&["td", "th"], &["tr", "table"]),
            "tr" => (&["tr"], &["table"]),
            "li" => (&["li"], &["ul", "ol"]),
            "option" => (&["option"], &["select"]),
            _ => return,
        };
        self.close_within(closes, within);
    }

    /// Closes the innermost open element named in `closes`, unless one named in `within`
    /// is open inside it.
    fn close_within(&mut self, closes: &[&str], within: &[&str]) {
        let open = |name: &&str| {
            IMPLIED
                .iter()
                .position(|n| n == name)
                .is_none_or(|i| self.implied_open[i] > 0)
        };
        if !closes.iter().any(open) {
            return;
        }
        for at in (0..self.stack.len()).rev() {
            let open = self.stack[at].name.as_str();
            if within.contains(&open) {
                return;
            }
            if closes.contains(&open) {
                self.drain_from(at);
                return;
            }
        }
    }

    /// Closes the innermost open `name` and whatever was left open inside it; a closing
    /// tag with nothing to close changes nothing.
    fn close(&mut self, name: &str) {
        if let Some(at) = self.stack.iter().rposition(|f| f.name == name) {
            self.drain_from(at);
        }
    }
}

/// The elements a start tag may close though their end tag is missing.
const IMPLIED: [&str; 6] = ["p", "td", "th", "tr", "li", "option"];

/// Start tags that close an open `<p>` (HTML's "close a p element" in button scope).
const CLOSES_P: [&str; 36] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dd",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "ul",
];

/// Ends the word at hand, in the seen text and the hidden alike: a word must not run on
/// from one into the other across a block. A right-to-left override open ends there too,
/// as a browser ends it at the paragraph's end (review: `<p>&#x202E;</p><p>Buy viagra`
/// read the next paragraph backwards).
fn break_words(r: &mut HtmlRender, styles: &mut Styles) {
    if std::mem::take(&mut styles.override_open) {
        push_both(r, POP_OVERRIDE);
    }
    push_both(r, ' ');
}

/// Writes `c` in the seen text and the hidden alike: a break or a direction control holds
/// for both.
fn push_both(r: &mut HtmlRender, c: char) {
    r.text.push(c);
    r.hidden.push(c);
}

/// Where text written now goes: the visible text or the hidden. Hidden runs are kept
/// apart from each other (seen text came between them), while seen text runs on across a
/// hidden run, as a browser shows `vi<span hidden>xyz</span>agra`.
fn out<'a>(r: &'a mut HtmlRender, styles: &mut Styles) -> &'a mut String {
    let hidden = styles.hidden();
    if hidden != styles.last_hidden {
        r.hidden.push(' ');
        styles.last_hidden = hidden;
    }
    if hidden {
        &mut r.hidden
    } else {
        &mut r.text
    }
}

/// Text elements whose content a mail client never shows in the page: the title (a
/// window's caption at most) and what only a browser without frames or plug-ins shows
/// (review: a thousand ham words in a `<title>` read as shown took 17 of 20 spam messages
/// under `tag`).
fn never_shown(element: &str) -> bool {
    matches!(element, "title" | "iframe" | "noembed" | "noframes")
}

/// Block-level elements: rendering them breaks words apart. Images and inputs sit in the
/// line like letters (review: `vi<img width=0 height=0>agra` read as two words).
fn is_block(tag: &str) -> bool {
    matches!(
        tag,
        "br" | "p"
            | "div"
            | "tr"
            | "td"
            | "th"
            | "li"
            | "ul"
            | "ol"
            | "table"
            | "tbody"
            | "thead"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "hr"
            | "blockquote"
            | "pre"
            | "center"
            | "title"
            | "body"
            | "html"
            | "head"
            | "dt"
            | "dd"
            | "dl"
            | "option"
            | "select"
            | "form"
            | "textarea"
            | "address"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "nav"
            | "caption"
            | "frame"
            | "iframe"
    )
}

/// Decodes a named or numeric entity body (the part between `&` and `;`).
fn decode_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "nbsp" | "ensp" | "emsp" | "thinsp" => ' ',
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" | "rsquo" => '\'',
        "ldquo" | "rdquo" => '"',
        "bull" | "middot" => '·',
        "shy" => '\u{AD}',
        "zwnj" => '\u{200C}',
        "zwj" => '\u{200D}',
        "aacute" => 'á',
        "eacute" => 'é',
        "iacute" => 'í',
        "oacute" => 'ó',
        "uacute" => 'ú',
        "agrave" => 'à',
        "egrave" => 'è',
        "ntilde" => 'ñ',
        "ccedil" => 'ç',
        "auml" => 'ä',
        "euml" => 'ë',
        "iuml" => 'ï',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "szlig" => 'ß',
        _ => return any_named_reference(name),
    })
}

/// Any other of HTML5's named references, from mail-parser's table (`&ZeroWidthSpace;`,
/// `&Iacute;`): a name the table above lacks must not keep a word apart.
fn any_named_reference(name: &str) -> Option<char> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let text = mail_parser::decoders::html::html_to_text(&format!("&{name};"));
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c != '&' => Some(c),
        _ => None,
    }
}

/// A numeric character reference at the start of `after` (the text after `&`), read as
/// browsers read it (HTML5): `#118` or `#x76`, any number of leading zeros, the `;`
/// optional (`&#118iagra` shows `viagra`); a code point no character has reads as U+FFFD.
/// Its character and the bytes it took.
fn numeric_reference(after: &str) -> Option<(char, usize)> {
    let rest = after.strip_prefix('#')?;
    let hex = rest.starts_with(['x', 'X']);
    let digits_at = if hex { 2 } else { 1 };
    let digits = after.get(digits_at..)?;
    let n = digits
        .bytes()
        .take_while(|b| {
            if hex {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        })
        .count();
    if n == 0 {
        return None;
    }
    let value = digits.get(..n)?.trim_start_matches('0');
    let code = match value.len() {
        0 => 0,
        1..=8 => u32::from_str_radix(value, if hex { 16 } else { 10 }).ok()?,
        _ => u32::MAX,
    };
    let c = char::from_u32(code)
        .filter(|&c| c != '\0')
        .unwrap_or('\u{FFFD}');
    let used = digits_at + n;
    let used = used + usize::from(after.get(used..).is_some_and(|r| r.starts_with(';')));
    Some((c, used))
}

/// The legacy reference a browser reads at the start of `after` (see
/// [`crate::mail::html::legacy_reference`]): its character and the bytes it took.
fn legacy_reference(after: &str, in_attribute: bool) -> Option<(char, usize)> {
    let name = crate::mail::html::legacy_reference(after, in_attribute)?;
    Some((decode_entity(name)?, name.len()))
}

/// Appends `raw` text (or, when `in_attribute`, an attribute's value) to `out`, decoding
/// character references as browsers do.
fn push_text(raw: &str, in_attribute: bool, out: &mut String) {
    let mut rest = raw;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some((c, used)) = numeric_reference(after) {
            out.push(c);
            rest = after.get(used..).unwrap_or_default();
            continue;
        }
        let whole = after
            .char_indices()
            .take(crate::mail::html::LONGEST_ENTITY_NAME + 1)
            .find(|&(_, c)| c == ';' || !(c.is_ascii_alphanumeric() || c == '#'))
            .filter(|&(_, c)| c == ';')
            .and_then(|(i, _)| Some((decode_entity(&after[..i])?, i + 1)));
        match whole.or_else(|| legacy_reference(after, in_attribute)) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Finds `needle` (ASCII, lower case) in `hay` ignoring ASCII case; returns the byte offset.
pub(super) fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Attributes of one tag kept whatever their name; past them, only those the renderer
/// reads (links, style, class, id, `hidden`, `dir`, colours), each the first of its name (link
/// evasion probe: an `href` after 32 junk attributes, which a browser follows, gave no
/// link; review: so did a `style` that hides text). The tag's length bounds the reading.
const MAX_ATTRIBUTES: usize = 32;

/// Attributes the renderer reads besides the links (`media`: the sheet's, of a `<style>`).
const READ_ATTRIBUTES: [&str; 9] = [
    "style", "class", "id", "hidden", "dir", "color", "bgcolor", "text", "media",
];

/// Attributes whose value a browser opens or sends a form to.
fn is_link_attribute(name: &str, element: &str) -> bool {
    matches!(
        name,
        "href" | "xlink:href" | "action" | "formaction" | "background"
    ) || (name == "src" && element != "img")
}

/// Parses the attributes of one tag body (after the name) into (name, value) pairs, the
/// first of each name only, as a browser keeps them: any [`MAX_ATTRIBUTES`], then the link
/// attributes of `element` and [`READ_ATTRIBUTES`].
pub(super) fn attributes(body: &str, element: &str) -> Vec<(String, String)> {
    let b = body.as_bytes();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let name = body[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = body[vs..i].to_string();
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = body[vs..i].to_string();
            }
        }
        let read = || is_link_attribute(&name, element) || READ_ATTRIBUTES.contains(&name.as_str());
        let room = out.len() < MAX_ATTRIBUTES || read();
        if room && !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    }
    out
}

/// Renders an HTML body to visible text and collects its links.
pub fn render(html: &str) -> HtmlRender {
    render_page(html, true)
}

/// Renders a page; with `conditional`, the links of Outlook's conditional comments are
/// collected too (from their markup rendered once, without following theirs again: a
/// page of nested ones must not nest renders).
fn render_page(html: &str, conditional: bool) -> HtmlRender {
    let mut r = HtmlRender {
        text: String::with_capacity(html.len() / 2),
        ..HtmlRender::default()
    };
    let sheet = StyleSheet::parse(html);
    let mut links = Links::new(MAX_LINKS);
    let mut closing_tags = ClosingTags::default();
    // The page is white unless the sheet paints its body (or `html`): a browser paints the
    // page with it even when the markup has no `<body>` tag.
    let page = if sheet.paints_background {
        None
    } else {
        let none = [];
        let painted = look("body", &none, &sheet)
            .background
            .or(look("html", &none, &sheet).background);
        painted.unwrap_or(Some((255, 255, 255)))
    };
    let mut styles = Styles {
        page,
        ..Styles::default()
    };
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        push_page_text(&rest[..lt], &mut r, &mut styles);
        let tail = &rest[lt..];
        // Comments: dropped without a space, so they cannot split a word.
        if let Some(comment) = tail.strip_prefix("<!--") {
            let len = crate::mail::html::comment_len(comment);
            if let Some(content) =
                crate::mail::html::conditional_content(&comment[..len]).filter(|_| conditional)
            {
                // Outlook shows it, with links other clients never see (link evasion
                // probe: `<!--[if mso]><a href="&#104;ttp://spam.test/">` gave no token).
                for link in render_page(content, false).links {
                    links.push(link);
                }
            }
            rest = &comment[len..];
            continue;
        }
        let next = tail[1..].chars().next();
        if !next.is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?') {
            // A lone '<' is text.
            out(&mut r, &mut styles).push('<');
            rest = &tail[1..];
            continue;
        }
        // The end of the tag as the rules' renderer finds it (review: a quote after an `=`
        // inside an unquoted value opened a value here, and hid the text after the tag).
        let i = crate::mail::html::tag_end(tail.as_bytes()).unwrap_or(tail.len());
        let inner = &tail[1..i.min(tail.len())];
        rest = if i < tail.len() { &tail[i + 1..] } else { "" };
        let closing = inner.starts_with('/');
        let inner = inner.trim_start_matches('/');
        let name_end = inner
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(inner.len());
        let name = inner[..name_end].to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if closing {
            if styles.closes_block(&name) {
                break_words(&mut r, &mut styles);
            }
            if name == "bdo" {
                // The end of a right-to-left override (see below).
                push_both(&mut r, POP_OVERRIDE);
                styles.override_open = false;
            }
            styles.close(&name);
            continue;
        }
        if let Some(element) = script_or_style(&name) {
            rest = closing_tags.find(rest, element).map_or("", |p| &rest[p..]);
            continue;
        }
        let attrs = attributes(&inner[name_end..], &name);
        for (an, av) in &attrs {
            if is_link_attribute(an, &name) && !av.is_empty() {
                let mut decoded = String::with_capacity(av.len());
                push_text(av.trim(), true, &mut decoded);
                links.push(decoded);
            }
        }
        if name == "bdo" {
            // Its letters shown right to left: the override control, which the tokenizer's
            // normalisation reads as a reader does (evasion probe). Any other direction
            // ends an override around it: what it holds is read as written (review: an
            // `ltr` one inside an `rtl` one read its text backwards).
            let rtl = attrs
                .iter()
                .any(|(n, v)| n == "dir" && v.eq_ignore_ascii_case("rtl"));
            push_both(&mut r, if rtl { OVERRIDE } else { POP_OVERRIDE });
            styles.override_open = rtl;
        }
        // A void or self-closing start tag still closes what it implies (`<hr>` a `<p>`).
        styles.close_implied_by(&name);
        if !is_void(&name) && !inner.ends_with('/') {
            let look = look(&name, &attrs, &sheet);
            // `display:inline` joins a `<div>`'s words to their neighbours' (review:
            // `vi<div style="display:inline">agra</div>` read as two words).
            let block = look.inline.map_or(is_block(&name), |inline| !inline);
            if block {
                break_words(&mut r, &mut styles);
            }
            styles.open(&name, look, block);
        } else if is_block(&name) {
            break_words(&mut r, &mut styles);
        }
        if let Some(element) = text_only_element(&name) {
            // Its content is text up to its closing tag, markup inside included (its
            // attributes read first: an iframe's `src` is a link); one never closed is read
            // as before.
            if let Some(end) = closing_tags.find(rest, element) {
                let text = &rest[..end];
                if never_shown(element) {
                    r.hidden.push(' ');
                    push_text(text, false, &mut r.hidden);
                    r.hidden.push(' ');
                } else {
                    push_text(text, false, out(&mut r, &mut styles));
                }
                rest = &rest[end..];
                continue;
            }
        }
    }
    push_page_text(rest, &mut r, &mut styles);
    r.links = links.into_vec();
    r
}

/// Appends a run of the page's text where [`out`] sends it, noting an override written in
/// it (`&#x202E;`), which a block then ends (see [`break_words`]).
fn push_page_text(raw: &str, r: &mut HtmlRender, styles: &mut Styles) {
    let text = out(r, styles);
    let from = text.len();
    push_text(raw, false, text);
    let mut buf = [0u8; 4];
    let override_bytes = OVERRIDE.encode_utf8(&mut buf).as_bytes();
    if memchr::memmem::find(&text.as_bytes()[from..], override_bytes).is_some() {
        styles.override_open = true;
    }
}

#[cfg(test)]
mod tests;
