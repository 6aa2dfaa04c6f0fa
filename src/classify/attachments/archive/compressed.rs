//! bzip2, xz and lzma files: one file each, named after the compressed file as bunzip2,
//! unxz and unlzma name it (`invoice.exe.xz` holds `invoice.exe`, `.tar.xz` and `.txz` a
//! tar), decompressed against the message's budget and judged as a gzip's file is. The
//! LZMA decoders' dictionaries are held to [`MEMORY_LIMIT_KB`], as 7-Zip's are: a header
//! declaring a 1.5 GiB dictionary is refused, not allocated.

use super::members::Members;
use super::sevenzip::MEMORY_LIMIT_KB;
use super::tarball::{judge_stream, judge_stream_names, Stream};
use super::{AttachmentPolicy, Budget, Counted, Findings, Place, Symbol};
use crate::classify::attachments::{magic, names};
use std::cell::Cell;
use std::io::Cursor;
use std::rc::Rc;

/// What an LZMA decoder holds beside its dictionary, in KiB (its probability tables and
/// buffers: about 100 KiB), with room to spare.
const DECODER_OVERHEAD_KB: usize = 1024;

/// Judges the bzip2, xz or lzma file (`kind`) in `data`.
pub(super) fn walk(
    kind: magic::Content,
    policy: &AttachmentPolicy,
    data: &[u8],
    place: Place<'_>,
    budget: &mut Budget,
    findings: &mut Findings,
) {
    let path = place.shown;
    let mut inner_names: Vec<String> = Vec::new();
    for name in place.names.iter().filter_map(|n| names::decompressed(n)) {
        if !inner_names.contains(&name) {
            inner_names.push(name);
        }
    }
    let Some((shown, exts)) = judge_stream_names(policy, path, &inner_names, budget, findings)
    else {
        return;
    };
    let consumed = Rc::new(Cell::new(0u64));
    let source = Counted {
        inner: Cursor::new(data),
        consumed: consumed.clone(),
    };
    let stream = Stream {
        path,
        shown: &shown,
        names: &inner_names,
        exts: &exts,
        // These formats store no name of their own.
        named_archive: false,
        depth: place.depth,
    };
    // The decoders count their buffers beside the dictionary: `xz -9`'s 64 MiB dictionary
    // needs some 65,640 KiB in all (review: refused at exactly 64 MiB).
    let limit = (MEMORY_LIMIT_KB + DECODER_OVERHEAD_KB) as u32;
    let cost = match kind {
        magic::Content::Bzip2 => super::cost::BZIP2,
        _ => super::cost::LZMA,
    };
    budget.at_cost(cost, |budget| match kind {
        magic::Content::Bzip2 => {
            let mut decoder = Bunzip::new(data);
            judge_stream(
                policy,
                &mut decoder,
                Bunzip::consumed,
                stream,
                budget,
                findings,
            );
        }
        magic::Content::Xz => {
            let mut decoder = lzma_rust2::XzReader::new_mem_limit(source, true, limit);
            judge_stream(
                policy,
                &mut decoder,
                |_| consumed.get(),
                stream,
                budget,
                findings,
            );
        }
        _ => match lzma_rust2::LzmaReader::new_mem_limit(source, limit, None) {
            Ok(mut decoder) => judge_stream(
                policy,
                &mut decoder,
                |_| consumed.get(),
                stream,
                budget,
                findings,
            ),
            Err(_) => {
                // A dictionary past the limit, or a header that is none.
                findings.add(Symbol::ArchiveUnreadable, path);
                findings.add(Symbol::ArchiveUninspected, path);
            }
        },
    });
}

/// The file a bzip2 file decompresses to, read as bunzip2 reads it (its streams in turn).
type Bunzip<'a> = Members<'a, bzip2::bufread::BzDecoder<&'a [u8]>>;
