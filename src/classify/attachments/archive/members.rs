//! Compressed files made of members one after another (gzip members, bzip2 streams), read
//! as gunzip and bunzip2 read them: each member in turn, ended by bytes after a member that
//! do not open another (tape padding, a mailer's junk), which the tools ignore with a
//! warning. A member that opens and then breaks is an error, as the tools', and so is a
//! run of more members than real files have ([`members_allowed`]): each costs a fresh
//! decoder and its buffers (15 MB of empty 14-byte bzip2 streams held a core for 41 s).

use std::io::Read;

/// A decoder of one member, reading the bytes from its start.
pub(super) trait Member<'a>: Read + Sized {
    /// The format, for errors.
    const KIND: &'static str;
    /// The first bytes of every member.
    const MAGIC: &'static [u8];
    /// A decoder of the member starting `data`.
    fn open(data: &'a [u8]) -> Self;
    /// The bytes it has not read yet.
    fn unread(&self) -> &'a [u8];
    /// The bytes after the member, once it ended.
    fn into_unread(self) -> &'a [u8];
}

impl<'a> Member<'a> for flate2::bufread::GzDecoder<&'a [u8]> {
    const KIND: &'static str = "gzip";
    const MAGIC: &'static [u8] = &[0x1f, 0x8b];
    fn open(data: &'a [u8]) -> Self {
        flate2::bufread::GzDecoder::new(data)
    }
    fn unread(&self) -> &'a [u8] {
        self.get_ref()
    }
    fn into_unread(self) -> &'a [u8] {
        self.into_inner()
    }
}

impl<'a> Member<'a> for bzip2::bufread::BzDecoder<&'a [u8]> {
    const KIND: &'static str = "bzip2";
    const MAGIC: &'static [u8] = b"BZh";
    fn open(data: &'a [u8]) -> Self {
        bzip2::bufread::BzDecoder::new(data)
    }
    fn unread(&self) -> &'a [u8] {
        self.get_ref()
    }
    fn into_unread(self) -> &'a [u8] {
        self.into_inner()
    }
}

/// Members a file of `len` bytes may have: a thousand, and one per 4 KiB beyond (BGZF,
/// the most divided real gzip, cuts a member per 64 KiB of data, rarely under 10 KiB
/// compressed; pbzip2 a stream per 900 KB block); empty members by the hundred thousand
/// are an attack.
fn members_allowed(len: usize) -> usize {
    1000 + len / 4096
}

/// The file the members of `M` in some bytes decompress to.
pub(super) struct Members<'a, M> {
    member: Option<M>,
    len: usize,
    rest: &'a [u8],
    left: usize,
}

impl<'a, M: Member<'a>> Members<'a, M> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Members {
            member: Some(M::open(data)),
            len: data.len(),
            rest: data,
            left: members_allowed(data.len()),
        }
    }

    /// Compressed bytes read so far.
    pub(super) fn consumed(&self) -> u64 {
        let rest = self.member.as_ref().map_or(self.rest, M::unread);
        (self.len - rest.len()) as u64
    }
}

impl<'a, M: Member<'a>> Read for Members<'a, M> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(member) = self.member.as_mut() {
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended (the decoder stops there): what follows it?
            if let Some(member) = self.member.take() {
                self.rest = member.into_unread();
            }
            if self.rest.starts_with(M::MAGIC) {
                if self.left == 0 {
                    return Err(std::io::Error::other(format!(
                        "more {} members than a file has",
                        M::KIND
                    )));
                }
                self.left -= 1;
                self.member = Some(M::open(self.rest));
            }
        }
        Ok(0)
    }
}
