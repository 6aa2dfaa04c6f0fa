//! Zip files for the tests: ordinary ones through the zip crate's writer, and hand-made
//! ones (encrypted flags, lying sizes, bombs) byte by byte.

use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

/// A deflated zip of `(name, content)` entries.
pub(in crate::classify::attachments) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_by(CompressionMethod::Deflated, entries)
}

/// A zip of `(name, content)` entries compressed by `method`.
pub(super) fn zip_by(method: CompressionMethod, entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A zip written as a stream (`zip -` to a pipe, Java's `ZipOutputStream`): the local
/// headers carry no sizes, a data descriptor after each entry does.
pub(super) fn streamed_zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new_stream(Vec::new());
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A zip whose entries are ZipCrypto-encrypted with a password.
pub(super) fn zipcrypto_zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use zip::unstable::write::FileOptionsExt;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .with_deprecated_encryption(b"infected")
        .unwrap();
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// One entry of a hand-made zip: its bytes are written as given (already compressed).
pub(super) struct RawEntry<'a> {
    pub name: &'a str,
    pub method: u16,
    pub flags: u16,
    pub data: &'a [u8],
    pub crc: u32,
    pub size: u32,
    pub extra: &'a [u8],
}

impl<'a> RawEntry<'a> {
    /// A stored (uncompressed) entry with a correct CRC and size.
    pub(super) fn stored(name: &'a str, data: &'a [u8]) -> RawEntry<'a> {
        RawEntry {
            name,
            method: 0,
            flags: 0,
            data,
            crc: crc32(data),
            size: data.len() as u32,
            extra: &[],
        }
    }
}

/// CRC-32 as zip stores it.
pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// Builds a zip from raw entries: local headers and data, central directory, end record.
pub(super) fn raw_zip(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let header = |sig: u32, central_fields: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(&sig.to_le_bytes());
            if central_fields {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // needed
            h.extend_from_slice(&e.flags.to_le_bytes());
            h.extend_from_slice(&e.method.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes()); // time, date
            h.extend_from_slice(&e.crc.to_le_bytes());
            h.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            h.extend_from_slice(&e.size.to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(e.extra.len() as u16).to_le_bytes());
            if central_fields {
                h.extend_from_slice(&0u16.to_le_bytes()); // comment
                h.extend_from_slice(&0u16.to_le_bytes()); // disk
                h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
                h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(e.name.as_bytes());
            h.extend_from_slice(e.extra);
            h
        };
        out.extend_from_slice(&header(0x0403_4b50, false));
        out.extend_from_slice(e.data);
        central.extend_from_slice(&header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // disk numbers
    let n = entries.len() as u16;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A raw deflate stream that expands to `mib` MiB of zeros, built from one compressed
/// MiB repeated: a full flush makes each copy independent of the ones before, so the
/// expanded data is never held anywhere.
pub(super) fn deflated_zeros(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(16 * 1024);
    c.compress_vec(&zeros, &mut block, FlushCompress::Full)
        .unwrap();
    assert_eq!(
        c.total_in(),
        zeros.len() as u64,
        "one call compresses the MiB"
    );
    let mut stream = Vec::with_capacity(block.len() * mib + 2);
    for _ in 0..mib {
        stream.extend_from_slice(&block);
    }
    // A final, empty fixed-Huffman block ends the stream.
    stream.extend_from_slice(&[0x03, 0x00]);
    stream
}
