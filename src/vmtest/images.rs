//! The disk images of a test's machines: an image folder given on the command
//! line or in test.toml, or built from a profile (core build → image stage),
//! once per profile even when several machines share it.
use super::Failure;
use super::qemu::ImageDir;
use super::spec::{MachineSpec, Source};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Images<'a> {
    default_profile: Option<&'a Path>,
    default_image: Option<&'a Path>,
    module_dirs: &'a [PathBuf],
    cache: Option<&'a Path>,
    /// Build outputs and images go here (the test's temporary folder).
    work: PathBuf,
    built: HashMap<PathBuf, ImageDir>,
}

impl<'a> Images<'a> {
    pub fn new(args: &'a super::VmTestArgs, work: &Path) -> Images<'a> {
        Images {
            default_profile: args.profile.as_deref(),
            default_image: args.image.as_deref(),
            module_dirs: &args.module_dirs,
            cache: args.cache.as_deref(),
            work: work.to_path_buf(),
            built: HashMap::new(),
        }
    }

    pub fn for_machine(&mut self, m: &MachineSpec) -> Result<ImageDir, Failure> {
        let profile = match (&m.source, self.default_image, self.default_profile) {
            (Source::Image(dir), _, _) => return ImageDir::open(dir).map_err(Failure::Driver),
            (Source::Default, Some(dir), _) => return ImageDir::open(dir).map_err(Failure::Driver),
            (Source::Profile(p), _, _) => p.clone(),
            (Source::Default, None, Some(p)) => p.to_path_buf(),
            (Source::Default, None, None) => {
                return Err(Failure::Driver(format!(
                    "machine {} names no profile or image in test.toml, and neither PROFILE nor --image was given",
                    m.name
                )));
            }
        };
        if let Some(img) = self.built.get(&profile) {
            return Ok(img.clone());
        }
        let img = self.build(&profile)?;
        self.built.insert(profile, img.clone());
        Ok(img)
    }

    fn build(&self, profile: &Path) -> Result<ImageDir, Failure> {
        let n = self.built.len();
        let build_dir = self.work.join(format!("build-{n}"));
        eprintln!("vm-test: building {}", profile.display());
        let opts = crate::build::BuildOptions {
            profile: profile.to_path_buf(),
            out: build_dir.clone(),
            module_dirs: self.module_dirs.to_vec(),
        };
        crate::build::build(&opts).map_err(Failure::Build)?;
        image_stage(
            &build_dir,
            &self.work.join(format!("image-{n}")),
            self.cache,
        )
    }
}

/// The image stage: the cached Debian base plus this build's overlay
/// (raw ext4, kernel and initrd are all the machines need).
fn image_stage(build_dir: &Path, out: &Path, cache: Option<&Path>) -> Result<ImageDir, Failure> {
    let req = crate::image::ImageRequest {
        build_dir: build_dir.to_path_buf(),
        out: out.to_path_buf(),
        cache_dir: cache.map_or_else(crate::image::cache::default_dir, Path::to_path_buf),
        rebuild_base: false,
        qcow2: false,
        disk: false,
        sources: Vec::new(),
        quiet: false,
    };
    let img = crate::image::build_image(&req).map_err(|e| Failure::Build(e.into()))?;
    Ok(ImageDir {
        rootfs: img.rootfs,
        kernel: img.kernel,
        initrd: img.initrd,
    })
}
