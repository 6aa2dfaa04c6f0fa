//! A bounded stand-in for a message too big to hold: the MIME structure and every header
//! section are kept, each text part is cut to its first and last lines, and the contents of
//! other parts (attachments) are left out. [`super::MessageView::parse`] reads a sample like
//! any message, so a big message is judged on what a whole-message scan would look at.
//!
//! The sampler is fed the message in chunks of any size and keeps at most `total` bytes
//! after the message's own header section, whatever the message size.

use crate::mail::render_kind::{render_kind_of_fields, RenderKind};
use std::collections::VecDeque;

/// Longest line handled whole; a longer one is taken in pieces of this size.
const MAX_LINE: usize = 64 * 1024;
/// Bytes of a part's `Content-Type` or `Content-Disposition` field remembered (a
/// boundary, a file name).
const MAX_FIELD: usize = 16 * 1024;
/// Room past `total` for boundary lines, so the structure survives a full sample.
const STRUCTURE_SLACK: usize = 64 * 1024;
/// Text parts that get a floor of [`FLOOR_HEAD`] and [`FLOOR_TAIL`] bytes even once
/// `total` is spent (review: two 600 KB filler parts spent the whole sample, and the spam
/// in the third text part, the one a client shows of a `multipart/alternative`, was
/// never scanned).
const FLOOR_PARTS: usize = 16;
/// Bytes kept from the start of a text part past `total` (one of [`FLOOR_PARTS`]).
const FLOOR_HEAD: usize = 16 * 1024;
/// Bytes kept from the end of a text part past `total`.
const FLOOR_TAIL: usize = 16 * 1024;
/// Text parts after the first [`FLOOR_PARTS`] that still get a small floor of
/// [`SMALL_FLOOR`] bytes of head and of tail (left alone in an earlier stop: past 16
/// parts of 33 KB after the total, about 1.6 MB in all, the next part went unscanned).
const SMALL_FLOOR_PARTS: usize = 240;
/// Head and tail kept of each of [`SMALL_FLOOR_PARTS`]: a pitch and its link.
const SMALL_FLOOR: usize = 2 * 1024;
/// Multiparts open at once at most: every `--` line is compared with each open boundary,
/// so nesting without bound made that quadratic (a message of nested multiparts and
/// `--x` lines held a blocking thread for minutes). Real mail nests a handful.
const MAX_OPEN_MULTIPARTS: usize = 32;

/// How much of a big message a sample keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleLimits {
    /// Bytes kept from the start of each text part.
    pub part_head: usize,
    /// Bytes kept from the end of each text part.
    pub part_tail: usize,
    /// Bytes kept in all after the message's header section.
    pub total: usize,
    /// Deepest `message/rfc822` nesting followed (the message itself is depth 0).
    pub max_depth: usize,
}

impl SampleLimits {
    /// The most bytes a sample holds after the message's header section: `total`, the
    /// structure's slack and every floor.
    pub fn most_bytes(&self) -> usize {
        let floors = FLOOR_PARTS * (FLOOR_HEAD + FLOOR_TAIL) + SMALL_FLOOR_PARTS * 2 * SMALL_FLOOR;
        self.total
            .saturating_add(STRUCTURE_SLACK)
            .saturating_add(floors)
    }
}

/// The result of sampling.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// A well-formed message: headers, structure, heads and tails of text parts.
    pub bytes: Vec<u8>,
    /// Length of the message's own header section at the start of `bytes`.
    pub header_len: usize,
    /// Text was left out of the sample (the middle of a long part, or parts past `total`).
    pub truncated: bool,
    /// A `message/rfc822` part was nested deeper than `max_depth` and not followed.
    pub too_deep: bool,
}

#[derive(Debug)]
struct Multipart {
    boundary: Vec<u8>,
    depth: usize,
}

/// What the sampler reads of a header section: the last `Content-Type` and
/// `Content-Disposition` values, as mail-parser and SpamAssassin read the last, however
/// long the section (review: the first 16 KiB of the fields were read, and a
/// `Content-Type` past them, or a second one, made a multipart one text part cut to its
/// head and tail, its middle parts never scanned), and the first `Content-Type`, which
/// clients read.
#[derive(Debug, Default)]
struct PartFields {
    /// The first `Content-Type` once a second one has begun.
    first_type: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    disposition: Option<Vec<u8>>,
    /// The field the last line began, when one of those two: a folded line continues it.
    current: Option<Field>,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    ContentType,
    Disposition,
}

impl PartFields {
    /// Reads the next line of the section; `continuation` when it is a piece of a line
    /// longer than [`MAX_LINE`] (never a field of its own, whatever it starts with).
    fn add(&mut self, line: &[u8], continuation: bool) {
        if continuation || matches!(line.first(), Some(b' ' | b'\t')) {
            let value = match self.current {
                Some(Field::ContentType) => self.content_type.as_mut(),
                Some(Field::Disposition) => self.disposition.as_mut(),
                None => None,
            };
            if let Some(value) = value.filter(|v| v.len() + line.len() <= MAX_FIELD) {
                value.extend_from_slice(line);
            }
            return;
        }
        self.current = None;
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let name = line[..colon].trim_ascii();
        let (field, slot) = if name.eq_ignore_ascii_case(b"content-type") {
            if self.first_type.is_none() {
                self.first_type = self.content_type.take();
            }
            (Field::ContentType, &mut self.content_type)
        } else if name.eq_ignore_ascii_case(b"content-disposition") {
            (Field::Disposition, &mut self.disposition)
        } else {
            return;
        };
        let value = &line[colon + 1..];
        *slot = Some(value[..value.len().min(MAX_FIELD)].to_vec());
        self.current = Some(field);
    }

    /// Whether the part is rendered as text (in `body` or `rawbody`).
    fn is_text(&self) -> bool {
        let last = self.content_type.as_deref();
        let first = self.first_type.as_deref().or(last);
        render_kind_of_fields(first, last, self.disposition.as_deref()) != RenderKind::Skipped
    }
}

#[derive(Debug)]
enum State {
    /// In the header section of an entity at `depth` (0 = the message itself).
    Headers { depth: usize, fields: PartFields },
    /// Outside any part: a multipart's preamble or epilogue.
    Skip,
    /// In a part's content; only text parts are kept.
    Leaf {
        text: bool,
        /// The head and tail the part keeps past `total` (decided at its first line;
        /// (0, 0) for none).
        floor: Option<(usize, usize)>,
        kept: usize,
        /// The most recent lines past the head, the tail candidates.
        tail: VecDeque<u8>,
        tail_lines: VecDeque<usize>,
    },
}

/// Builds a [`Sample`] from a message fed in chunks.
#[derive(Debug)]
pub struct Sampler {
    limits: SampleLimits,
    out: Vec<u8>,
    header_len: Option<usize>,
    truncated: bool,
    too_deep: bool,
    /// Text parts given a floor past `total` so far.
    floors_given: usize,
    /// Bytes those floors may keep in all: structure lines (boundaries, part headers)
    /// past `total` get this much more room, or a floored part would lose its own.
    floor_bytes: usize,
    carry: Vec<u8>,
    /// The next line is the continuation of an over-long one (never a boundary).
    continuation: bool,
    boundaries: Vec<Multipart>,
    state: State,
}

impl Sampler {
    /// A sampler keeping what `limits` allow.
    pub fn new(limits: SampleLimits) -> Sampler {
        Sampler {
            limits,
            out: Vec::with_capacity(64 * 1024),
            header_len: None,
            truncated: false,
            too_deep: false,
            floors_given: 0,
            floor_bytes: 0,
            carry: Vec::new(),
            continuation: false,
            boundaries: Vec::new(),
            state: State::Headers {
                depth: 0,
                fields: PartFields::default(),
            },
        }
    }

    /// Feeds the next bytes of the message.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    let (line, rest) = input.split_at(i + 1);
                    if self.carry.is_empty() {
                        self.line(line);
                    } else {
                        let mut whole = std::mem::take(&mut self.carry);
                        whole.extend_from_slice(line);
                        self.line(&whole);
                        whole.clear();
                        self.carry = whole;
                    }
                    self.continuation = false;
                    input = rest;
                }
                None => {
                    let room = MAX_LINE - self.carry.len();
                    let take = input.len().min(room);
                    self.carry.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.carry.len() >= MAX_LINE {
                        let piece = std::mem::take(&mut self.carry);
                        self.line(&piece);
                        self.continuation = true;
                    }
                }
            }
        }
    }

    /// Ends the message and returns the sample.
    pub fn finish(mut self) -> Sample {
        if !self.carry.is_empty() {
            let rest = std::mem::take(&mut self.carry);
            self.line(&rest);
        }
        self.end_leaf();
        let header_len = self.header_len.unwrap_or(self.out.len());
        Sample {
            bytes: self.out,
            header_len,
            truncated: self.truncated,
            too_deep: self.too_deep,
        }
    }

    fn line(&mut self, line: &[u8]) {
        if !self.continuation && line.starts_with(b"--") {
            if let Some((level, close)) = self.boundary(line) {
                self.end_leaf();
                self.boundaries.truncate(level + 1);
                self.emit_structure(line);
                self.state = if close {
                    self.boundaries.pop();
                    State::Skip
                } else {
                    State::Headers {
                        depth: self.boundaries[level].depth,
                        fields: PartFields::default(),
                    }
                };
                return;
            }
        }
        match self.state {
            State::Headers { .. } => self.header_line(line),
            State::Skip => {}
            State::Leaf { .. } => self.leaf_line(line),
        }
    }

    /// Which enclosing multipart `line` delimits (innermost first), and whether it closes it.
    fn boundary(&self, line: &[u8]) -> Option<(usize, bool)> {
        self.boundaries
            .iter()
            .enumerate()
            .rev()
            .find_map(|(level, mp)| {
                crate::mail::mime::delimits(line, &mp.boundary).map(|close| (level, close))
            })
    }

    fn header_line(&mut self, line: &[u8]) {
        let blank = line == b"\r\n" || line == b"\n";
        let top = self.header_len.is_none();
        let continuation = self.continuation;
        if let State::Headers { fields, .. } = &mut self.state {
            if !blank {
                fields.add(line, continuation);
            }
        }
        if top {
            // The message's own header section is always kept whole.
            self.out.extend_from_slice(line);
        } else {
            self.emit_structure(line);
        }
        if !blank {
            return;
        }
        if top {
            self.header_len = Some(self.out.len());
        }
        let State::Headers { depth, fields } = std::mem::replace(&mut self.state, State::Skip)
        else {
            return;
        };
        self.state = self.body_state(depth, &fields);
    }

    /// What follows a header section, from its `Content-Type`.
    fn body_state(&mut self, depth: usize, fields: &PartFields) -> State {
        let leaf = |text| State::Leaf {
            text,
            floor: None,
            kept: 0,
            tail: VecDeque::new(),
            tail_lines: VecDeque::new(),
        };
        let Some((ctype, subtype, boundary)) = fields
            .content_type
            .as_deref()
            .and_then(crate::mail::mime::type_and_boundary)
        else {
            return leaf(fields.is_text());
        };
        match ctype.as_str() {
            "multipart" => match boundary {
                Some(_) if self.boundaries.len() >= MAX_OPEN_MULTIPARTS => {
                    self.too_deep = true;
                    leaf(false)
                }
                // Of any length, as mail-parser takes it (review: past 200 characters the
                // multipart was one text part here): each `--` line is compared with at
                // most [`MAX_OPEN_MULTIPARTS`] boundaries, no further than its own length.
                Some(b) if !b.is_empty() => {
                    self.boundaries.push(Multipart { boundary: b, depth });
                    State::Skip
                }
                _ => leaf(true),
            },
            "message" if matches!(subtype.as_str(), "rfc822" | "global") => {
                if depth < self.limits.max_depth {
                    State::Headers {
                        depth: depth + 1,
                        fields: PartFields::default(),
                    }
                } else {
                    self.too_deep = true;
                    leaf(false)
                }
            }
            // As SpamAssassin renders it: `text/calendar` left out, a `.html` file
            // name made text whatever its label (review: such a part was left out here).
            _ => leaf(fields.is_text()),
        }
    }

    fn leaf_line(&mut self, line: &[u8]) {
        let used = self.used();
        let limits = self.limits;
        let floors_given = &mut self.floors_given;
        let floor_bytes = &mut self.floor_bytes;
        let State::Leaf {
            text,
            floor,
            kept,
            tail,
            tail_lines,
        } = &mut self.state
        else {
            return;
        };
        if !*text {
            return;
        }
        // A part starting where the total cannot hold a whole part gets a floor of its own,
        // while floors last.
        let (floor_head, floor_tail) = *floor.get_or_insert_with(|| {
            let short = used + limits.part_head + limits.part_tail > limits.total;
            let granted = match *floors_given {
                _ if !short => (0, 0),
                n if n < FLOOR_PARTS => (FLOOR_HEAD, FLOOR_TAIL),
                n if n < FLOOR_PARTS + SMALL_FLOOR_PARTS => (SMALL_FLOOR, SMALL_FLOOR),
                _ => (0, 0),
            };
            if granted != (0, 0) {
                *floors_given += 1;
                *floor_bytes += granted.0 + granted.1;
            }
            granted
        });
        // The head, as long as the tail still fits in the total after it (or in the floor).
        let within_total = used + line.len() + limits.part_tail <= limits.total;
        let within_floor = *kept + line.len() <= floor_head.min(limits.part_head);
        if tail_lines.is_empty()
            && *kept + line.len() <= limits.part_head
            && (within_total || within_floor)
        {
            *kept += line.len();
            self.out.extend_from_slice(line);
            return;
        }
        tail.extend(line.iter().copied());
        tail_lines.push_back(line.len());
        let room = limits
            .part_tail
            .min(limits.total.saturating_sub(used).max(floor_tail));
        while tail.len() > room {
            let Some(n) = tail_lines.pop_front() else {
                break;
            };
            tail.drain(..n);
            self.truncated = true;
        }
    }

    /// Writes out the tail of the part that just ended.
    fn end_leaf(&mut self) {
        if let State::Leaf { tail, .. } = &mut self.state {
            let (a, b) = tail.as_slices();
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b);
            tail.clear();
        }
        if matches!(self.state, State::Leaf { .. }) {
            self.state = State::Skip;
        }
    }

    /// Bytes kept after the message's header section.
    fn used(&self) -> usize {
        self.out.len() - self.header_len.unwrap_or(self.out.len())
    }

    /// Keeps a structure line (part headers, boundaries) while there is room for it.
    fn emit_structure(&mut self, line: &[u8]) {
        // Floors keep text past the total: their parts' boundaries and headers must fit
        // after it too (review: past the slack the 12th floored part lost its boundary and
        // `Content-Transfer-Encoding`, and its base64 ran into the part before).
        let room = self.limits.total + STRUCTURE_SLACK + self.floor_bytes;
        if self.used() + line.len() <= room {
            self.out.extend_from_slice(line);
        } else {
            self.truncated = true;
        }
    }
}

#[cfg(test)]
mod tests;
