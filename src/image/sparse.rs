//! Sparse files: an ext4 image is mostly holes, so copying and hashing walk
//! only its data extents (SEEK_DATA / SEEK_HOLE). Reading the holes through
//! the kernel made a 2 GiB image cost seconds to copy and ~13 s to hash.
use super::error::{Result, io_err};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// [start, end) byte ranges that hold data, in order.
pub fn data_extents(file: &File, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let Some(data) = seek(file, pos, libc::SEEK_DATA) else {
            break;
        };
        if data >= len {
            break;
        }
        // A file system without hole support reports the whole rest as data.
        let hole = seek(file, data, libc::SEEK_HOLE).unwrap_or(len).min(len);
        out.push((data, hole));
        pos = hole;
    }
    out
}

/// lseek; None when there is no more data (ENXIO) or the call fails.
fn seek(file: &File, pos: u64, whence: libc::c_int) -> Option<u64> {
    let off = libc::off_t::try_from(pos).ok()?;
    // SAFETY: lseek on an fd we own; a negative result is an error, handled.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    u64::try_from(r).ok()
}

/// Copies `src` to `dest` (created or truncated) with the same holes: a
/// reflink where the file system offers one (btrfs, XFS), else the data
/// extents with copy_file_range (in-kernel, no user-space buffer), else
/// read/write.
pub fn copy(src: &Path, dest: &Path) -> Result<()> {
    let from = File::open(src).map_err(io_err("reading", src))?;
    let len = from.metadata().map_err(io_err("reading", src))?.len();
    let to = File::create(dest).map_err(io_err("writing", dest))?;
    if reflink(&from, &to) {
        return Ok(());
    }
    to.set_len(len).map_err(io_err("writing", dest))?;
    for (start, end) in data_extents(&from, len) {
        copy_range(&from, &to, start, end).map_err(io_err("copying into", dest))?;
    }
    Ok(())
}

fn reflink(from: &File, to: &File) -> bool {
    // SAFETY: FICLONE takes the source fd as its argument; both fds are open.
    unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) == 0 }
}

fn copy_range(from: &File, to: &File, start: u64, end: u64) -> std::io::Result<()> {
    let mut pos = start;
    while pos < end {
        match kernel_copy(from, to, pos, end - pos) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => pos += n,
            // Older kernels or file system pairs without support: plain copy.
            Err(e) if fallback_worthy(&e) => return user_copy(from, to, pos, end),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn kernel_copy(from: &File, to: &File, pos: u64, len: u64) -> std::io::Result<u64> {
    let mut off_in = libc::loff_t::try_from(pos).map_err(std::io::Error::other)?;
    let mut off_out = off_in;
    let want = usize::try_from(len.min(1 << 30)).unwrap_or(1 << 30);
    // SAFETY: both fds are open; the offsets are valid pointers to locals.
    let n = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            &mut off_in,
            to.as_raw_fd(),
            &mut off_out,
            want,
            0,
        )
    };
    u64::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

fn fallback_worthy(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
    )
}

fn user_copy(from: &File, to: &File, mut pos: u64, end: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while pos < end {
        let want = usize::try_from((end - pos).min(buf.len() as u64)).unwrap_or(buf.len());
        from.read_exact_at(&mut buf[..want], pos)?;
        to.write_all_at(&buf[..want], pos)?;
        pos += want as u64;
    }
    Ok(())
}

/// sha256 of a file's bytes; holes are fed as zeros from memory.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(io_err("reading", path))?;
    let len = file.metadata().map_err(io_err("reading", path))?.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    for (start, end) in data_extents(&file, len) {
        feed_zeros(&mut hasher, &zeros, start - pos);
        feed_file(&mut hasher, &file, &mut buf, start, end).map_err(io_err("reading", path))?;
        pos = end;
    }
    feed_zeros(&mut hasher, &zeros, len - pos);
    Ok(super::cache::hex(&hasher.finalize()))
}

fn feed_file(
    h: &mut Sha256,
    file: &File,
    buf: &mut [u8],
    mut pos: u64,
    end: u64,
) -> std::io::Result<()> {
    while pos < end {
        let want = usize::try_from((end - pos).min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact_at(&mut buf[..want], pos)?;
        h.update(&buf[..want]);
        pos += want as u64;
    }
    Ok(())
}

fn feed_zeros(hasher: &mut Sha256, zeros: &[u8], mut n: u64) {
    while n > 0 {
        let k = usize::try_from(n.min(zeros.len() as u64)).unwrap_or(zeros.len());
        hasher.update(&zeros[..k]);
        n -= k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with data, a hole, data and a trailing hole.
    fn sparse_file(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("s.img");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[7u8; 5000], 0).unwrap();
        f.write_all_at(&[9u8; 3 << 20], 20 << 20).unwrap();
        p
    }

    #[test]
    fn copy_keeps_bytes_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = sparse_file(dir.path());
        let dest = dir.path().join("d.img");
        copy(&src, &dest).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dest).unwrap());
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&dest).unwrap().blocks();
        // 64 MiB apparent; only the ~3 MiB of data may be allocated.
        assert!(blocks * 512 < 8 << 20, "{blocks} blocks allocated");
    }

    #[test]
    fn hash_equals_the_hash_of_all_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = sparse_file(dir.path());
        let want = super::super::cache::hex(&Sha256::digest(std::fs::read(&src).unwrap()));
        assert_eq!(sha256_file(&src).unwrap(), want);
        let empty = dir.path().join("e");
        File::create(&empty).unwrap();
        assert_eq!(
            sha256_file(&empty).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
