//! A file system on a loop device, and the power cut: the image is copied the moment the
//! child is killed. Pages the file system dirtied but did not write back (no fsync, and
//! the journal commit interval is 300 s) are not in the copy, as on a disk after a power
//! cut; the copy, attached to another loop device and mounted, replays the file
//! system's own log the way a reboot does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The file systems the promise is proven on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ext4,
    Xfs,
    Btrfs,
}

impl Kind {
    fn mkfs(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
            Kind::Xfs => ("mkfs.xfs", &["-q", "-f"]),
            Kind::Btrfs => ("mkfs.btrfs", &["-q", "-f"]),
        }
    }

    /// Mount options: the longest commit interval, so that only what was forced to disk
    /// reaches it during a run of a few seconds (XFS has no such option; its log is
    /// written back on its own schedule, which is also far longer than a run).
    fn options(self) -> &'static str {
        match self {
            Kind::Ext4 | Kind::Btrfs => "commit=300",
            // A copy has the original's UUID; never refused for it, even if the
            // original is still mounted (a lazy unmount).
            Kind::Xfs => "nouuid",
        }
    }

    /// The image size: 256 MiB, but XFS refuses file systems under 300 MB.
    fn image_len(self) -> u64 {
        match self {
            Kind::Xfs => 320 << 20,
            Kind::Ext4 | Kind::Btrfs => 256 << 20,
        }
    }
}

/// A mounted loop-device file system; unmounted and detached on drop.
pub struct LoopFs {
    image: PathBuf,
    dev: String,
    mnt: PathBuf,
    mounted: bool,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl LoopFs {
    /// Makes a fresh file system of `kind` in `image` and mounts it on `mnt`. `Err` says
    /// why it could not (no root, no loop devices, no mkfs): the caller skips or fails.
    pub fn create(kind: Kind, image: &Path, mnt: &Path) -> Result<LoopFs, String> {
        let _ = fs::remove_file(image);
        fs::File::create(image)
            .and_then(|f| f.set_len(kind.image_len()))
            .map_err(|e| format!("create {}: {e}", image.display()))?;
        let (mkfs, args) = kind.mkfs();
        let mut all: Vec<&str> = args.to_vec();
        let img = image.to_str().unwrap();
        all.push(img);
        run(mkfs, &all)?;
        LoopFs::attach(kind, image, mnt)
    }

    /// Attaches `image` to a free loop device and mounts it on `mnt`.
    pub fn attach(kind: Kind, image: &Path, mnt: &Path) -> Result<LoopFs, String> {
        fs::create_dir_all(mnt).map_err(|e| format!("create {}: {e}", mnt.display()))?;
        let dev = run("losetup", &["-f", "--show", image.to_str().unwrap()])?;
        let mut lfs = LoopFs {
            image: image.to_path_buf(),
            dev,
            mnt: mnt.to_path_buf(),
            mounted: false,
        };
        run(
            "mount",
            &["-o", kind.options(), &lfs.dev, lfs.mnt.to_str().unwrap()],
        )?;
        lfs.mounted = true;
        Ok(lfs)
    }

    /// The power cut: copies what the device holds now to `to`, then unmounts this file
    /// system (whose writeback no longer matters) and detaches it. The copy must be taken
    /// at once after the writer died: the kernel starts writing dirty pages back after
    /// ~30 s.
    pub fn cut(mut self, to: &Path) -> Result<(), String> {
        let copied = run(
            "cp",
            &[
                "--sparse=always",
                self.image.to_str().unwrap(),
                to.to_str().unwrap(),
            ],
        );
        self.release();
        copied.map(|_| ())
    }

    fn release(&mut self) {
        if self.mounted {
            let mnt = self.mnt.to_str().unwrap();
            if run("umount", &[mnt]).is_err() {
                let _ = run("umount", &["-l", mnt]);
            }
            self.mounted = false;
        }
        if !self.dev.is_empty() {
            let _ = run("losetup", &["-d", &self.dev]);
            self.dev.clear();
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether loop devices and the three mkfs tools can be used here (root, `/dev/loop-control`).
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control (loop devices)".into());
    }
    if run("id", &["-u"]).as_deref() != Ok("0") {
        return Some("not root (loop devices and mount need it)".into());
    }
    for tool in ["losetup", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            || Path::new("/usr/sbin").join(tool).exists()
            || Path::new("/sbin").join(tool).exists();
        if !found {
            return Some(format!("{tool} is not installed (xfsprogs, btrfs-progs)"));
        }
    }
    None
}
