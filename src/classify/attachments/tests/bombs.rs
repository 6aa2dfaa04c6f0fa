//! Decompression bombs: each yields a symbol after at most the expansion budget of work,
//! and none is ever expanded in memory (neither here nor in the policy).

use super::zipbuild::{deflated_zeros, raw_zip, zip_of, RawEntry};
use super::*;

/// CRC-32 of `mib` MiB of zeros.
fn zeros_crc(mib: usize) -> u32 {
    let zeros = vec![0u8; 1 << 20];
    let mut crc = flate2::Crc::new();
    for _ in 0..mib {
        crc.update(&zeros);
    }
    crc.sum()
}

/// An entry expanding to `mib` MiB of zeros, declaring `declared` as its size.
fn zeros_entry<'a>(name: &'a str, stream: &'a [u8], declared: u32, crc: u32) -> RawEntry<'a> {
    RawEntry {
        name,
        method: 8,
        flags: 0,
        data: stream,
        crc,
        size: declared,
        extra: &[],
    }
}

/// A one-entry zip of `mib` MiB of zeros with an honest size and CRC.
fn zeros_zip(name: &str, mib: usize) -> Vec<u8> {
    let stream = deflated_zeros(mib);
    raw_zip(&[zeros_entry(
        name,
        &stream,
        (mib << 20) as u32,
        zeros_crc(mib),
    )])
}

#[test]
fn a_zip_of_gigabytes_of_zeros_is_a_bomb() {
    // 4000 MiB of zeros in about 4 MB; the default policy stops at 64 MiB, long before
    // the CRC at the end (left 0: never computed, never reached).
    let stream = deflated_zeros(4000);
    let bomb = raw_zip(&[zeros_entry("zeros.bin", &stream, 4000 << 20, 0)]);
    assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
    assert_eq!(
        symbols(&[part("big.zip", "application/zip", &bomb)]),
        vec!["ARCHIVE_BOMB"]
    );
}

#[test]
fn a_bomb_that_lies_about_its_size_is_stopped_at_the_declared_size() {
    // The headers claim 10 bytes; the data would expand to 256 MiB. The reader refuses
    // to go past the declared size, so the lie costs one chunk and reads as malformed.
    let stream = deflated_zeros(256);
    let bomb = raw_zip(&[zeros_entry("small.txt", &stream, 10, 0)]);
    assert_eq!(
        symbols_with(
            &policy_with(3, 1000, 16 << 20),
            &[part("small.zip", "", &bomb)]
        ),
        vec!["ARCHIVE_UNREADABLE"]
    );
}

#[test]
fn nested_bombs_share_one_budget() {
    // 42.zip in miniature: 3 levels of 8 copies, 8 MiB of zeros at the bottom:
    // 8 * 8 * 8 * 8 MiB = 4 GiB if expanded, a few hundred KB as sent.
    let mut level = zeros_zip("zeros.bin", 8);
    for depth in 0..3 {
        let names: Vec<String> = (0..8).map(|i| format!("l{depth}_{i}.zip")).collect();
        let entries: Vec<(&str, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), level.as_slice()))
            .collect();
        level = zip_of(&entries);
    }
    assert!(level.len() < 4 << 20, "{} bytes", level.len());
    let found = symbols_with(
        &policy_with(4, 10_000, 32 << 20),
        &[part("42.zip", "", &level)],
    );
    assert_eq!(found, vec!["ARCHIVE_BOMB", "ARCHIVE_NESTED_SKIPPED"]);
    // With the default depth the fourth level is not even reached.
    let found = symbols_with(
        &policy_with(3, 10_000, 32 << 20),
        &[part("42.zip", "", &level)],
    );
    assert!(found.contains(&"ARCHIVE_TOO_DEEP"), "{found:?}");
}

#[test]
fn many_small_bombs_add_up() {
    // Sixteen entries of 4 MiB of zeros each: none alone reaches the 32 MiB budget,
    // together they do. (The zip reader refuses entries that share a name or whose
    // local and central names differ, so overlapping-entry bombs cannot pose as this.)
    let stream = deflated_zeros(4);
    let crc = zeros_crc(4);
    let names: Vec<String> = (0..16).map(|i| format!("z{i}.bin")).collect();
    let entries: Vec<RawEntry<'_>> = names
        .iter()
        .map(|n| zeros_entry(n, &stream, 4 << 20, crc))
        .collect();
    let z = raw_zip(&entries);
    let found = symbols_with(&policy_with(3, 1000, 32 << 20), &[part("o.zip", "", &z)]);
    assert_eq!(found, vec!["ARCHIVE_BOMB"]);
    assert!(symbols_with(&policy_with(3, 1000, 128 << 20), &[part("o.zip", "", &z)]).is_empty());
}

#[test]
fn large_ordinary_archives_are_not_called_bombs() {
    // Incompressible data over the limit: inspection stops, but it is no bomb.
    let mut noise = vec![0u8; 3 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let z = zip_of(&[("noise.bin", noise.as_slice())]);
    assert_eq!(
        symbols_with(&policy_with(3, 1000, 1 << 20), &[part("noise.zip", "", &z)]),
        vec!["ARCHIVE_TOO_LARGE"]
    );
    // Within the limit, nothing at all.
    assert!(symbols_with(&policy_with(3, 1000, 4 << 20), &[part("noise.zip", "", &z)]).is_empty());
}

/// Regression (review): the ratio was the message's: 1 MiB of ordinary data ahead of a
/// 4 GB bomb (a second attachment) brought it under 100, and the bomb scored
/// `ARCHIVE_TOO_LARGE` (0.5) instead of `ARCHIVE_BOMB` (6).
#[test]
fn a_bomb_beside_ordinary_data_is_still_a_bomb() {
    let mut noise = vec![0u8; 1 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let stream = deflated_zeros(4000);
    let bomb = raw_zip(&[zeros_entry("zeros.bin", &stream, 4000 << 20, 0)]);
    let p = policy_with(3, 1000, 32 << 20);
    assert_eq!(
        symbols_with(&p, &[part("big.zip", "", &bomb)]),
        vec!["ARCHIVE_BOMB"]
    );
    let ordinary = zip_of(&[("photo.bin", noise.as_slice())]);
    let found = symbols_with(
        &p,
        &[
            part("photos.zip", "", &ordinary),
            part("big.zip", "", &bomb),
        ],
    );
    assert_eq!(found, vec!["ARCHIVE_BOMB"]);
}
