//! Tests of the attachment policy: one file per concern, sharing the builders here.

mod archives;
mod bombs;
mod compressed;
mod forms;
mod rars;
mod sevenzips;
mod tarballs;
mod uninspected;
pub(in crate::classify::attachments) mod zipbuild;

use super::*;

/// The policy with default settings.
pub(in crate::classify::attachments) fn policy() -> AttachmentPolicy {
    AttachmentPolicy::new(&AttachmentsConfig::default())
}

/// The policy with a smaller expansion budget, so bomb tests stay quick in debug builds.
fn policy_with(depth: usize, entries: usize, bytes: u64) -> AttachmentPolicy {
    AttachmentPolicy::new(&AttachmentsConfig {
        max_archive_depth: depth,
        max_archive_entries: entries,
        max_expanded_bytes: bytes,
        ..AttachmentsConfig::default()
    })
}

/// One attachment's owned parts.
pub(in crate::classify::attachments) struct Part {
    names: Vec<String>,
    content_type: String,
    data: Vec<u8>,
}

pub(in crate::classify::attachments) fn part(name: &str, content_type: &str, data: &[u8]) -> Part {
    Part {
        names: if name.is_empty() {
            Vec::new()
        } else {
            vec![name.to_string()]
        },
        content_type: content_type.to_string(),
        data: data.to_vec(),
    }
}

/// The symbol names found in these parts, sorted and unique.
fn symbols_with(policy: &AttachmentPolicy, parts: &[Part]) -> Vec<&'static str> {
    let attachments: Vec<Attachment<'_>> = parts
        .iter()
        .map(|p| Attachment {
            names: &p.names,
            content_type: &p.content_type,
            data: &p.data,
            content_left_out: false,
        })
        .collect();
    let mut names: Vec<&'static str> = policy
        .inspect(&attachments)
        .iter()
        .map(|f| f.symbol.name())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

pub(in crate::classify::attachments) fn symbols(parts: &[Part]) -> Vec<&'static str> {
    symbols_with(&policy(), parts)
}

/// The symbols the archive readers find in `data`, without the panic guard of
/// `inspect`: a reader's panic fails the test.
fn walk_uncaught(policy: &AttachmentPolicy, data: &[u8]) -> Vec<&'static str> {
    let mut findings = Findings::default();
    let mut budget = archive::Budget::new(policy.max_entries, policy.max_expanded_bytes);
    let place = archive::Place {
        depth: 1,
        shown: "x",
        names: &[],
    };
    archive::walk_all(policy, data, place, &mut budget, &mut findings);
    findings.0.keys().map(|s| s.name()).collect()
}

/// A minimal PE program: a DOS header pointing at a `PE\0\0` signature.
fn pe() -> Vec<u8> {
    let mut v = vec![0u8; 512];
    v[0] = b'M';
    v[1] = b'Z';
    v[0x3C] = 0x80;
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

/// `len` bytes that deflate and store like ordinary binary data (no long runs, so no
/// bomb): a simple generator's.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";
