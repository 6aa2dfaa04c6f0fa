//! Whether an HTML element hides its text from a reader: the inline styles and attributes
//! that hidden "good words" use (`display:none`, `visibility:hidden`, a font of size 0 or
//! 1px, `opacity:0`, the `hidden` attribute), and the colours that make text the colour of
//! its background. What the element says itself (attributes, inline `style`) is read over
//! what the page's `<style>` blocks say of it ([`super::html_sheet`]), as the cascade has it.

use super::html_sheet::StyleSheet;

/// A colour as red, green and blue.
pub type Rgb = (u8, u8, u8);

/// How far apart (per channel) two colours may be and still look the same to a reader.
const SAME_COLOUR: u8 = 20;

/// What one element says of how its text looks.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Look {
    /// It hides its content whatever its descendants say (`display:none`, `opacity:0`,
    /// the `hidden` attribute).
    pub hides: bool,
    /// Its `visibility`, when it sets one: `Some(true)` hidden. Inherited, and undone by a
    /// descendant's `visibility:visible`.
    pub invisible: Option<bool>,
    /// Its font size, when it sets one: `Some(true)` too small to read, `Some(false)` a
    /// size of its own, readable; `None` also for a size relative to its parent's (`em`,
    /// `%`), which is as small as that. Inherited: a descendant's readable size undoes it
    /// (review: the `font-size:0` wrapper of responsive mail layouts, its columns set
    /// back to 14px, hid whole newsletters).
    pub tiny: Option<bool>,
    /// Its text colour, when it sets one.
    pub color: Option<Rgb>,
    /// Whether its text colour is see-through (`transparent`, an alpha under 0.1), when it
    /// sets a colour. Inherited with the colour.
    pub clear: Option<bool>,
    /// Its background: `Some(Some(c))` a colour, `Some(None)` an image or a colour not
    /// understood (the background is then unknown), `None` when it sets none or a
    /// see-through one.
    pub background: Option<Option<Rgb>>,
    /// Its `display`, when it sets one other than `none`: `Some(true)` laid out in the line
    /// (`inline`, `inline-block`…), `Some(false)` as a block.
    pub inline: Option<bool>,
}

/// The look of an element `tag` with `attributes` (names lower case) on a page styled by
/// `sheet`.
pub fn look(tag: &str, attributes: &[(String, String)], sheet: &StyleSheet) -> Look {
    let mut look = Look::default();
    let mut hidden_attribute = false;
    // Of a repeated attribute the first counts, as in a browser.
    let (mut inline, mut classes, mut id) = (None, None, None);
    for (name, value) in attributes {
        match name.as_str() {
            "hidden" => hidden_attribute = true,
            "style" => inline = inline.or(Some(value.as_str())),
            "class" => classes = classes.or(Some(value.as_str())),
            "id" => id = id.or(Some(value.as_str())),
            "color" if tag == "font" => look.color = parse_color(value).or(look.color),
            "text" if tag == "body" => look.color = parse_color(value).or(look.color),
            // Only where HTML has it: a browser ignores `<div bgcolor>` (review: a
            // `<span bgcolor=white>` in a black cell made its white text count as hidden).
            "bgcolor" if PAINTS_BGCOLOR.contains(&tag) => {
                look.background = Some(parse_color(value));
            }
            "background" => look.background = Some(None),
            _ => {}
        }
    }
    // The sheet's rules first, in cascade order, then the inline style, which a later
    // declaration beats unless the earlier one is `!important`.
    let from_sheet = sheet.declarations_for(tag, classes.unwrap_or(""), id.unwrap_or(""));
    let inline: Vec<Declaration> = declarations(inline.unwrap_or("")).collect();
    let display = apply(
        from_sheet.iter().flat_map(|d| d.iter()).chain(&inline),
        &mut look,
    );
    // A `display` set by the page overrides the `hidden` attribute (the browser's own style
    // sheet is what hides it): `<div hidden style="display:block">` is seen (review).
    match display {
        Some(none) => look.hides |= none,
        None => look.hides |= hidden_attribute,
    }
    look
}

/// Elements whose `bgcolor` attribute a browser paints.
const PAINTS_BGCOLOR: [&str; 6] = ["body", "table", "tr", "td", "th", "marquee"];

/// Whether text of colour `fg` on `bg` is hard to tell from its background.
pub fn same_colour(fg: Rgb, bg: Rgb) -> bool {
    fg.0.abs_diff(bg.0) <= SAME_COLOUR
        && fg.1.abs_diff(bg.1) <= SAME_COLOUR
        && fg.2.abs_diff(bg.2) <= SAME_COLOUR
}

/// One declaration of a property [`apply`] reads: `font-size: 0 !important`.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// One of [`READ_PROPERTIES`], lower case.
    pub property: &'static str,
    /// Lower case, trimmed, without `!important`.
    pub value: String,
    pub important: bool,
}

/// The declarations of a `style` (an attribute's value or a rule's block) that [`apply`]
/// reads, in order. The others are skipped before anything is kept: a style of thousands
/// of them must not cost a search of all before it each.
pub fn declarations(style: &str) -> impl Iterator<Item = Declaration> + '_ {
    style.split(';').filter_map(|declaration| {
        let (property, value) = declaration.split_once(':')?;
        let property = property.trim().to_ascii_lowercase();
        let property = READ_PROPERTIES.into_iter().find(|p| *p == property)?;
        let value = value.trim().to_ascii_lowercase();
        let (value, important) = match value.strip_suffix("!important") {
            Some(v) => (v.trim().to_string(), true),
            None => (value, false),
        };
        Some(Declaration {
            property,
            value,
            important,
        })
    })
}

/// The declaration of each property that wins among `declared` (in cascade order), as a
/// browser picks it: the last, but never over an earlier `!important` one (review:
/// `display:none;display:block` was read as hidden). At most one a property, so a run of
/// declarations may be cut to its winners before more follow it.
pub fn cascade<'a>(declared: impl IntoIterator<Item = &'a Declaration>) -> Vec<&'a Declaration> {
    let mut winning: Vec<&Declaration> = Vec::new();
    for d in declared {
        match winning.iter_mut().find(|held| held.property == d.property) {
            Some(held) if held.important && !d.important => {}
            Some(held) => *held = d,
            None => winning.push(d),
        }
    }
    winning
}

/// Applies `declared` (in cascade order) to `look`, each property as [`cascade`] picks
/// it. Says whether it sets `display` to `none`, when it sets a `display` at all.
///
/// Besides `display:none` and its kin, the ways newsletters hide a preheader, which
/// spammers use to hide good words (evasion probe: each read as shown text before): a box
/// of no height or width that clips what overflows it, a position or an indent far off the
/// page, a transform to nothing, a clip to nothing.
fn apply<'a>(declared: impl Iterator<Item = &'a Declaration>, look: &mut Look) -> Option<bool> {
    let mut display = None;
    let (mut no_room, mut clips, mut placed, mut off_page) = (false, false, false, false);
    for Declaration {
        property, value, ..
    } in cascade(declared)
    {
        match *property {
            "display" => {
                display = Some(value == "none");
                look.inline = match value.as_str() {
                    "none" => None,
                    v if v.starts_with("inline") || v == "contents" => Some(true),
                    _ => Some(false),
                };
            }
            "visibility" => {
                look.invisible = match value.as_str() {
                    "hidden" | "collapse" => Some(true),
                    "visible" => Some(false),
                    _ => None,
                };
            }
            "font-size" => look.tiny = font_size(value),
            "opacity" if fraction(value).is_some_and(|o| o < 0.1) => look.hides = true,
            "color" => {
                if let Some(colour) = css_colour(value) {
                    look.clear = Some(colour.alpha < 0.1);
                    if colour.alpha >= 0.1 {
                        look.color = Some(colour.rgb);
                    }
                }
            }
            "background-color" => {
                if let Some(background) = background(css_colour(value)) {
                    look.background = Some(background);
                }
            }
            "background" => {
                // A shorthand: unknown with an image or a value known only when the page
                // is drawn (`var(--bg)`), else its colour; without one it is see-through.
                let image = ["url(", "gradient(", "image(", "var(", "env("]
                    .iter()
                    .any(|f| value.contains(f));
                if image {
                    look.background = Some(None);
                } else if let Some(colour) = split_values(value).find_map(css_colour) {
                    if let Some(colour) = background(Some(colour)) {
                        look.background = Some(colour);
                    }
                }
            }
            // An image under the text: its colours are not known (review: white text on a
            // banner's picture counted as hidden).
            "background-image" if value != "none" => look.background = Some(None),
            "height" | "max-height" | "width" | "max-width" => {
                no_room |= length(value).is_some_and(|(n, _)| n <= 0.0);
            }
            "overflow" | "overflow-x" | "overflow-y" => {
                clips |= value
                    .split_whitespace()
                    .any(|v| v == "hidden" || v == "clip");
            }
            "position" => placed = value == "absolute" || value == "fixed",
            "left" | "top" | "right" | "margin-left" | "margin-top" => {
                off_page |= far_off(value);
            }
            "text-indent" if far_off(value) => look.hides = true,
            "transform" if scales_to_nothing(value) => look.hides = true,
            "clip" | "clip-path" if clips_everything(value) => look.hides = true,
            _ => {}
        }
    }
    if (no_room && clips) || (placed && off_page) {
        look.hides = true;
    }
    display
}

/// The style properties [`apply`] reads, from an element's `style` and from the page's
/// sheets alike.
const READ_PROPERTIES: [&str; 25] = [
    "display",
    "visibility",
    "font-size",
    "opacity",
    "color",
    "background-color",
    "background",
    "background-image",
    "height",
    "max-height",
    "width",
    "max-width",
    "overflow",
    "overflow-x",
    "overflow-y",
    "position",
    "left",
    "top",
    "right",
    "margin-left",
    "margin-top",
    "text-indent",
    "transform",
    "clip",
    "clip-path",
];

/// How far off the page (in any unit) a position or an indent puts text no reader sees.
const FAR_OFF: f64 = -500.0;

/// A number and its unit at the start of a CSS value (`-9999px`, `0`, `.5em`).
fn length(value: &str) -> Option<(f64, &str)> {
    let value = value.trim();
    let end = value
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0)))
        .map_or(value.len(), |(i, _)| i);
    let number = value[..end].parse::<f64>().ok().filter(|n| n.is_finite())?;
    let unit = value[end..].split_whitespace().next().unwrap_or("");
    Some((number, unit))
}

/// Whether a position or an indent puts text far off the page.
fn far_off(value: &str) -> bool {
    length(value).is_some_and(|(n, unit)| n <= FAR_OFF && unit != "%")
        || length(value).is_some_and(|(n, unit)| n <= -100.0 && unit == "%")
}

/// Whether a `transform` shrinks its element to nothing (`scale(0)`, `scaleY(0)`).
fn scales_to_nothing(value: &str) -> bool {
    value.match_indices("scale").any(|(at, _)| {
        let after = value[at + 5..].trim_start_matches(['x', 'y', 'z', '3', 'd']);
        after
            .strip_prefix('(')
            .and_then(|args| args.split([',', ')', ' ']).find(|a| !a.is_empty()))
            .and_then(length)
            .is_some_and(|(n, _)| n == 0.0)
    })
}

/// Whether a `clip` or `clip-path` leaves nothing of its element: `rect(0 0 0 0)`,
/// `inset(50%)` or more, a circle of no radius.
fn clips_everything(value: &str) -> bool {
    let args = |name: &str| {
        value
            .strip_prefix(name)
            .and_then(|a| a.trim_start().strip_prefix('('))
            .and_then(|a| a.split(')').next())
            .map(|a| {
                a.split([',', ' '])
                    .filter(|x| !x.is_empty())
                    .map(length)
                    .collect::<Vec<_>>()
            })
    };
    if let Some(edges) = args("rect") {
        return !edges.is_empty() && edges.iter().all(|e| e.is_some_and(|(n, _)| n == 0.0));
    }
    if let Some(insets) = args("inset") {
        return insets
            .first()
            .copied()
            .flatten()
            .is_some_and(|(n, unit)| unit == "%" && n >= 50.0);
    }
    if let Some(radius) = args("circle") {
        return radius
            .first()
            .copied()
            .flatten()
            .is_some_and(|(n, _)| n == 0.0);
    }
    false
}

/// An opacity as a fraction: `0.05` or `5%`.
fn fraction(value: &str) -> Option<f64> {
    let (n, unit) = length(value)?;
    match unit {
        "%" => Some(n / 100.0),
        "" => Some(n),
        _ => None,
    }
}

/// The words of a shorthand's value, a function's arguments kept with it
/// (`#fff url(x.png) no-repeat`, `rgb(0, 0, 0) none`).
fn split_values(value: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    value
        .split(move |c: char| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            c.is_whitespace() && depth == 0
        })
        .filter(|w| !w.is_empty())
}

/// A CSS colour read with its alpha.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Colour {
    rgb: Rgb,
    alpha: f32,
}

/// Any CSS colour (every named colour, `transparent`, `rgb()`/`rgba()` in both syntaxes
/// and with percentages, `hsl()`, `hwb()`, `#rgba`, `#rrggbbaa`), or old HTML's hex
/// without its `#`.
fn css_colour(value: &str) -> Option<Colour> {
    let value = value.trim().trim_matches(['"', '\'']);
    if let Ok(c) = csscolorparser::parse(value) {
        let channel = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        return Some(Colour {
            rgb: (channel(c.r), channel(c.g), channel(c.b)),
            alpha: c.a,
        });
    }
    bare_hex(value).map(|rgb| Colour { rgb, alpha: 1.0 })
}

/// What a background colour makes of the background: `Some(Some(c))` that colour when it
/// is near opaque, `None` when it is see-through (the parent's shows), `Some(None)` when it
/// blends (unknown) or is not understood.
fn background(colour: Option<Colour>) -> Option<Option<Rgb>> {
    match colour {
        Some(c) if c.alpha >= 0.9 => Some(Some(c.rgb)),
        Some(c) if c.alpha < 0.1 => None,
        _ => Some(None),
    }
}

/// What a `font-size` says (see [`Look::tiny`]): too small to read at 0 in any unit,
/// under 3px or 2pt, or at a tenth or less of the parent's (`1%`, `0.05em`; evasion probe:
/// `2px` and `1%` read as readable); a size of its own otherwise, unless it is relative to
/// the parent's.
fn font_size(value: &str) -> Option<bool> {
    let value = value.trim();
    let Some((size, unit)) = length(value) else {
        // A keyword: `small`, `medium`… are sizes of their own; `smaller`, `inherit`… not.
        let relative = matches!(value, "smaller" | "larger" | "inherit" | "unset" | "revert");
        return (!relative && !value.is_empty()).then_some(false);
    };
    let tiny = match unit {
        "px" => size < 3.0,
        "pt" => size < 2.0,
        "%" => size <= 10.0,
        "em" | "rem" | "ex" | "ch" => size <= 0.1,
        _ => false,
    };
    if size <= 0.0 || tiny {
        return Some(true);
    }
    let relative = matches!(unit, "em" | "%" | "ex" | "ch" | "");
    (!relative).then_some(false)
}

/// An opaque colour as an HTML attribute (`color`, `bgcolor`, `text`) gives it: any CSS
/// form ([`css_colour`]), or old HTML's hex without its `#` (`fefefe`).
pub fn parse_color(value: &str) -> Option<Rgb> {
    css_colour(value).filter(|c| c.alpha >= 0.9).map(|c| c.rgb)
}

/// Old HTML's hex colour written without its `#`: `rrggbb` or `rgb`.
fn bare_hex(hex: &str) -> Option<Rgb> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |s: &str| u8::from_str_radix(s, 16).ok();
    match hex.len() {
        6 => Some((
            channel(&hex[0..2])?,
            channel(&hex[2..4])?,
            channel(&hex[4..6])?,
        )),
        3 => {
            let twice = |i: usize| channel(&hex[i..=i]).map(|c| c * 17);
            Some((twice(0)?, twice(1)?, twice(2)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn none() -> StyleSheet {
        StyleSheet::default()
    }

    /// Whether the element hides its own text (descendants may undo some of it).
    fn hides(l: Look) -> bool {
        l.hides || l.invisible == Some(true) || l.tiny == Some(true)
    }

    #[test]
    fn styles_that_hide_text_are_read() {
        for style in [
            "display:none",
            "DISPLAY : None !important",
            "visibility:hidden",
            "font-size:0",
            "font-size: 1px",
            "font-size:0.5pt",
            "opacity:0",
        ] {
            let l = look("span", &attrs(&[("style", style)]), &none());
            assert!(hides(l), "{style}");
        }
        for style in [
            "font-size:1em",
            "font-size:10px",
            "opacity:0.9",
            "display:block",
        ] {
            assert!(
                !hides(look("span", &attrs(&[("style", style)]), &none())),
                "{style}"
            );
        }
        assert!(look("div", &attrs(&[("hidden", "")]), &none()).hides);
        // Sizes of their own undo a parent's tiny font; relative ones are as small as it.
        for (style, tiny) in [
            ("font-size:14px", Some(false)),
            ("font-size:small", Some(false)),
            ("font-size:1.2rem", Some(false)),
            ("font-size:2em", None),
            ("font-size:150%", None),
            ("font-size:inherit", None),
        ] {
            assert_eq!(
                look("td", &attrs(&[("style", style)]), &none()).tiny,
                tiny,
                "{style}"
            );
        }
    }

    #[test]
    fn colours_are_read_in_their_usual_forms() {
        assert_eq!(parse_color("#FFF"), Some((255, 255, 255)));
        assert_eq!(parse_color("\"fefefe\""), Some((254, 254, 254)));
        assert_eq!(parse_color("rgb(1, 2, 3)"), Some((1, 2, 3)));
        assert_eq!(parse_color("White"), Some((255, 255, 255)));
        assert_eq!(parse_color("#12345"), None);
        assert_eq!(parse_color("transparent"), None);
        let l = look("font", &attrs(&[("color", "#ffffff")]), &none());
        assert_eq!(l.color, Some((255, 255, 255)));
        let l = look(
            "td",
            &attrs(&[("style", "background: #000 url(x.gif)")]),
            &none(),
        );
        assert_eq!(l.background, Some(None), "an image: unknown");
        let l = look("td", &attrs(&[("bgcolor", "navy")]), &none());
        assert_eq!(l.background, Some(Some((0, 0, 128))));
        assert!(same_colour((255, 255, 255), (250, 250, 250)));
        assert!(!same_colour((255, 255, 255), (0, 0, 128)));
    }
}
