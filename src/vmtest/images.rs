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
    /// Skip disk.img when the test boots rootfs.img directly.
    direct_kernel: bool,
    module_dirs: &'a [PathBuf],
    cache: Option<&'a Path>,
    /// Build outputs and images go here (the test's temporary folder).
    work: PathBuf,
    /// The test's output folder: each machine's manifest.json and config.json are copied there.
    out: PathBuf,
    /// Per profile: its image and the build folder it came from.
    built: HashMap<PathBuf, (ImageDir, PathBuf)>,
}

impl<'a> Images<'a> {
    pub fn new(args: &'a super::VmTestArgs, work: &Path, out: &Path) -> Images<'a> {
        Images {
            default_profile: args.profile.as_deref(),
            default_image: args.image.as_deref(),
            direct_kernel: args.direct_kernel,
            module_dirs: &args.module_dirs,
            cache: args.cache.as_deref(),
            work: work.to_path_buf(),
            out: out.to_path_buf(),
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
        if !self.built.contains_key(&profile) {
            let built = self.build(&profile)?;
            self.built.insert(profile.clone(), built);
        }
        let (img, build_dir) = &self.built[&profile];
        publish_build(build_dir, &self.out, &m.name)?;
        Ok(img.clone())
    }

    fn build(&self, profile: &Path) -> Result<(ImageDir, PathBuf), Failure> {
        let n = self.built.len();
        let build_dir = self.work.join(format!("build-{n}"));
        eprintln!("vm-test: building {}", profile.display());
        let opts = crate::build::BuildOptions {
            profile: profile.to_path_buf(),
            out: build_dir.clone(),
            module_dirs: self.module_dirs.to_vec(),
        };
        crate::build::build(&opts).map_err(Failure::Build)?;
        let img = image_stage(
            &build_dir,
            &self.work.join(format!("image-{n}")),
            self.cache,
            !self.direct_kernel,
        )?;
        Ok((img, build_dir))
    }
}

/// Tests derive what to expect from the build (declared units, evaluated
/// options) rather than from lists of their own: OUT/MACHINE.manifest.json
/// and OUT/MACHINE.config.json outlive the temporary build folder.
fn publish_build(build_dir: &Path, out: &Path, machine: &str) -> Result<(), Failure> {
    for file in ["manifest.json", "config.json"] {
        let from = build_dir.join(file);
        let to = out.join(format!("{machine}.{file}"));
        std::fs::copy(&from, &to).map_err(|e| {
            Failure::Driver(format!(
                "cannot copy {} to {}: {e}",
                from.display(),
                to.display()
            ))
        })?;
    }
    Ok(())
}

/// The image stage: the cached Debian base plus this build's overlay; the
/// shipped disk.img too unless the test boots rootfs.img directly.
fn image_stage(
    build_dir: &Path,
    out: &Path,
    cache: Option<&Path>,
    disk: bool,
) -> Result<ImageDir, Failure> {
    let req = crate::image::ImageRequest {
        build_dir: build_dir.to_path_buf(),
        out: out.to_path_buf(),
        cache_dir: cache.map_or_else(crate::image::cache::default_dir, Path::to_path_buf),
        rebuild_base: false,
        qcow2: false,
        disk,
        sources: Vec::new(),
        quiet: false,
        pinned: None,
        snapshot: None,
        shared: Default::default(),
    };
    let img = crate::image::build_image(&req).map_err(|e| Failure::Build(e.into()))?;
    Ok(ImageDir::from_output(&img))
}
