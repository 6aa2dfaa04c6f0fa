//! A read-only memory map of part of a spool file, so a check that needs a big message as
//! one slice (DKIM body hashes) reads it from the page cache instead of the heap.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;

/// `len` bytes of a file from `offset`, mapped read-only; unmapped on drop. The lifetime
/// ties it to the borrow of whatever owns the file, so the owner cannot rewrite the
/// mapped bytes while the map is alive.
pub struct Mapped<'a> {
    ptr: *mut libc::c_void,
    map_len: usize,
    delta: usize,
    len: usize,
    _owner: PhantomData<&'a File>,
}

// SAFETY: the mapping is read-only and private to this value; sharing `&[u8]` views of it
// between threads is as safe as sharing any immutable slice.
unsafe impl Send for Mapped<'_> {}
// SAFETY: see `Send`.
unsafe impl Sync for Mapped<'_> {}

impl std::fmt::Debug for Mapped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped").field("len", &self.len).finish()
    }
}

impl<'a> Mapped<'a> {
    /// Maps `len` bytes of `file` from `offset`. The file must not shrink while mapped
    /// (spool files in `tmp/` belong to their session; nothing else truncates them).
    pub fn new(file: &'a File, offset: u64, len: usize) -> io::Result<Mapped<'a>> {
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                map_len: 0,
                delta: 0,
                len: 0,
                _owner: PhantomData,
            });
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096);
        let aligned = offset - offset % page;
        let delta = usize::try_from(offset - aligned)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let map_len = len + delta;
        let file_offset = libc::off_t::try_from(aligned)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: a fresh shared read-only mapping of a descriptor we hold open; the
        // result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Hashing reads front to back: let the kernel read ahead. Advice only.
        // SAFETY: the range is the mapping just created.
        unsafe { libc::madvise(ptr, map_len, libc::MADV_SEQUENTIAL) };
        Ok(Mapped {
            ptr,
            map_len,
            delta,
            len,
            _owner: PhantomData,
        })
    }
}

impl std::ops::Deref for Mapped<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr + delta .. + len` lies inside the live mapping created in `new`,
        // which is readable and stays mapped until `drop`.
        unsafe { std::slice::from_raw_parts((self.ptr as *const u8).add(self.delta), self.len) }
    }
}

impl Drop for Mapped<'_> {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: unmapping exactly the mapping created in `new`, once.
            unsafe { libc::munmap(self.ptr, self.map_len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_unaligned_ranges_and_empty_ones() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let m = Mapped::new(&f, 4097, 10_000).unwrap();
        assert_eq!(&m[..], &data[4097..14_097]);
        let empty = Mapped::new(&f, 5, 0).unwrap();
        assert!(empty.is_empty());
    }
}
