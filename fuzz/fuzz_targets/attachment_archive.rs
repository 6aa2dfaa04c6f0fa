//! An attachment's decoded bytes from the internet → the attachment policy
//! (`classify::attachments::AttachmentPolicy::inspect`: name and type checks, magic bytes,
//! zip, gzip, tar, RAR and 7-Zip archives opened as streams, nested, within a per-message
//! budget).
//!
//! The first three bytes choose the limits (archive depth 0–4, entries 1–1,021, expanded
//! bytes 1 KiB–2 MiB) so the fuzzer meets each limit often; the rest is the attachment,
//! named `a.zip`. Besides "no panic, no hang" (a panic in the zip reader is caught in the
//! gateway and shows as ARCHIVE_UNREADABLE; libFuzzer's hook stops at it here, so such a
//! defect is found rather than hidden): findings sorted by symbol and each symbol once;
//! the same findings on a second run; with depth 0 no archive is opened; and the heap the
//! inspection holds at its peak stays within what the limits promise, a few times the
//! attachment plus twice the expanded-bytes budget plus a fixed allowance (a small archive
//! that makes the reader allocate by what it declares, not by what it holds, fails here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxguard::classify::attachments::{Attachment, AttachmentPolicy, Finding};
use mxguard::config::AttachmentsConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the live heap and its peak, so the target can check what an inspection holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static HEAP: Counting = Counting;

/// Heap an inspection may hold besides the attachment-proportional part and the budget:
/// the read buffers of each level (64 KiB), the inflater's state and window, the reader's
/// tables.
const FIXED_ALLOWANCE: usize = 4 << 20;
/// What reading one 7-Zip header may hold, the one allocation by what an archive declares
/// that the policy accepts (README "Malware defences"): the header, decoded within its
/// 2 MiB bound, and about a hundred bytes for each entry it declares (one header byte can
/// declare one), read one header at a time.
const SEVEN_ZIP_HEADER_ALLOWANCE: usize = 2 * 1024 * 1024 * 110;

fn policy(limits: &[u8]) -> (AttachmentPolicy, u64) {
    let byte = |i: usize| limits.get(i).copied().unwrap_or(0);
    let config = AttachmentsConfig {
        max_archive_depth: usize::from(byte(0) % 5),
        max_archive_entries: 1 + usize::from(byte(1)) * 4,
        max_expanded_bytes: 1024u64 << (byte(2) % 12),
        ..AttachmentsConfig::default()
    };
    let budget = config.max_expanded_bytes;
    (AttachmentPolicy::new(&config), budget)
}

fn inspect(policy: &AttachmentPolicy, data: &[u8]) -> Vec<Finding> {
    let names = ["a.zip".to_string()];
    let attachment = Attachment {
        names: &names,
        content_type: "application/zip",
        data,
        content_left_out: false,
    };
    policy.inspect(&[attachment])
}

fuzz_target!(|input: &[u8]| {
    let (limits, data) = input.split_at(input.len().min(3));
    let (policy, budget) = policy(limits);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let first = inspect(&policy, data);
    let held = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let seven_zip = has_7z_signature(data).then_some(SEVEN_ZIP_HEADER_ALLOWANCE);
    let allowed =
        data.len() * 8 + 2 * budget as usize + FIXED_ALLOWANCE + seven_zip.unwrap_or(0);
    assert!(
        held <= allowed,
        "inspection held {held} bytes of heap at its peak: more than {allowed} \
         for a {} byte attachment and a {budget} byte budget",
        data.len()
    );

    for pair in first.windows(2) {
        assert!(pair[0].symbol < pair[1].symbol, "findings not sorted or not distinct");
    }
    let again = inspect(&policy, data);
    assert_eq!(first, again, "findings differ between two runs");
    if limits.first().is_some_and(|d| d % 5 == 0) {
        for f in &first {
            assert!(
                !f.symbol.name().starts_with("ARCHIVE_"),
                "{} with no archive level to open",
                f.symbol.name()
            );
        }
    }
});

/// Whether a 7-Zip signature is anywhere in the bytes (an archive at any level, or behind
/// a prefix), so the 7-Zip header allowance applies.
fn has_7z_signature(data: &[u8]) -> bool {
    data.windows(6).any(|w| w == b"7z\xbc\xaf\x27\x1c")
}
