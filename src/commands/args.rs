//! The command line of every verb (clap), and how each becomes the request
//! of its layer. Only the CLI (cli.rs, commands/) parses arguments; the
//! layers take plain structs.
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct ModuleDirs {
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    #[arg(long = "modules", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The profile, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// Output folder (replaced atomically; a failed build leaves it as it was)
    #[arg(short, long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub modules: ModuleDirs,
    /// Print a JSON summary on stdout instead of text (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The profile, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    #[command(flatten)]
    pub modules: ModuleDirs,
    /// Print the result as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OptionsArgs {
    /// Folders of modules to document [default: ./modules]
    #[arg(long = "modules", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The reference as JSON on stdout (shape: docs/json.md)
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// The manual as Markdown (docs/options.md is generated with this)
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The profile, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// An option (`ssh.port`) or a path in the image (`/etc/iptables/rules.v4`)
    #[arg(value_name = "OPTION|PATH")]
    pub what: String,
    #[command(flatten)]
    pub modules: ModuleDirs,
    /// Print the explanation as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older build output folder
    pub a: PathBuf,
    /// The newer build output folder
    pub b: PathBuf,
    /// Print the differences as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

/// Registry credentials are never flags: HARDROOT_REGISTRY_USERNAME and
/// HARDROOT_REGISTRY_PASSWORD, or HARDROOT_REGISTRY_AUTH_FILE (a docker
/// config.json), or docker's own config.
const REGISTRY_AUTH_HELP: &str = "Credentials: HARDROOT_REGISTRY_USERNAME + HARDROOT_REGISTRY_PASSWORD, or \
    HARDROOT_REGISTRY_AUTH_FILE (a docker config.json), or $DOCKER_CONFIG/config.json \
    (~/.docker/config.json); never a flag. Registries on 127.0.0.0/8, ::1 and localhost are \
    spoken to over HTTP, all others over HTTPS.";

#[derive(Debug, Args)]
#[command(after_help = REGISTRY_AUTH_HELP)]
pub struct PushArgs {
    /// An image folder `hardroot image` wrote (with image-manifest.json)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to: HOST[:PORT]/REPOSITORY:TAG, e.g. registry.example.org/fleet/web:1
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Publish this acceptance report (the HTML `hardroot report` wrote) with the image
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Only print errors and the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the result as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = REGISTRY_AUTH_HELP)]
pub struct PullArgs {
    /// What to fetch: HOST[:PORT]/REPOSITORY:TAG or …@sha256:DIGEST
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Folder to write the files into (made if missing; files are renamed into place when all are verified)
    #[arg(short, long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Only print errors and the digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the result as JSON on stdout (shape: docs/json.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Profiles to build, e.g. profiles/xmpp-server.toml; with several, each
    /// goes to OUT/<profile>/ (profiles/*.toml builds a whole tree; fragments are skipped)
    #[arg(required_unless_present_any = ["from_build", "from_manifest"], value_name = "PROFILE")]
    pub profiles: Vec<PathBuf>,
    /// Output folder: rootfs.img, vmlinuz, initrd.img, image-manifest.json (and
    /// the overlay); with several profiles, one folder per profile inside it
    #[arg(short, long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// With several profiles: how many images are built at once (a package
    /// set is still bootstrapped once, by one of them)
    #[arg(short, long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Use an existing `hardroot build` output folder instead of building PROFILE
    #[arg(long, value_name = "DIR", conflicts_with = "profiles")]
    pub from_build: Option<PathBuf>,
    /// Build exactly what an image-manifest.json records (same overlay, package
    /// versions, sources, base identity); its folder must hold the build
    #[arg(long, value_name = "FILE", conflicts_with_all = ["profiles", "from_build"])]
    pub from_manifest: Option<PathBuf>,
    /// With --from-manifest: bootstrap from a dated snapshot archive (URL with the date)
    #[arg(long, value_name = "URL", requires = "from_manifest")]
    pub snapshot: Option<String>,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    #[arg(long = "modules", value_name = "DIR")]
    pub module_dirs: Vec<PathBuf>,
    /// Base cache [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    #[arg(long, env = "HARDROOT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Bootstrap the base again even if the cache has it
    #[arg(long)]
    pub rebuild_base: bool,
    /// A base missing from the cache is fetched from this registry
    /// repository (HOST[:PORT]/REPOSITORY, tagged with base keys) before it is bootstrapped
    #[arg(long, value_name = "REF", conflicts_with = "from_manifest")]
    pub cache_from: Option<String>,
    /// A base this builder has goes to this registry repository when it lacks it
    /// (HOST[:PORT]/REPOSITORY; credentials as for push)
    #[arg(long, value_name = "REF", conflicts_with = "from_manifest")]
    pub cache_to: Option<String>,
    /// Also write OUT/rootfs.qcow2
    #[arg(long)]
    pub qcow2: bool,
    /// Skip disk.img and disk.qcow2 (the golden disk of a profile that imports
    /// `disk`): rootfs.img, kernel and initrd only, for a quicker direct-kernel boot
    #[arg(long)]
    pub no_disk: bool,
    /// apt sources for mmdebstrap [default: the host's /etc/apt sources]
    #[arg(long = "sources", value_name = "FILE")]
    pub sources: Vec<PathBuf>,
    /// Only print errors and the final summary
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout (shape: docs/json.md); progress stays on stderr
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The output folder of `hardroot image`: image-manifest.json, disk.img, the build
    pub out: PathBuf,
    /// The build folder (overlay/, manifest.json, config.json) [default: OUT]
    #[arg(long, value_name = "DIR")]
    pub build: Option<PathBuf>,
    /// Bootstrap the base from a dated snapshot archive (URL with the date),
    /// for versions the mirror no longer serves
    #[arg(long, value_name = "URL")]
    pub snapshot: Option<String>,
    /// apt sources for the rebuild [default: those recorded in image-manifest.json]
    #[arg(long = "sources", value_name = "FILE")]
    pub sources: Vec<PathBuf>,
    /// Where to rebuild (needs room for a base and a disk) [default: /var/tmp]
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// Only print errors and the verdict
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
    /// Base cache [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    #[arg(long, env = "HARDROOT_CACHE", value_name = "DIR", global = true)]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheAction {
    /// List the cached bases, most recently used first: key, size, last use, packages
    List {
        /// One JSON document instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove cached bases; with both options, only those matching both
    #[command(group(clap::ArgGroup::new("rule").required(true).multiple(true).args(["keep", "older_than"])))]
    Gc {
        /// Keep the N most recently used entries
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Remove entries last used longer ago than this, e.g. 30d, 12h, 90m
        #[arg(long, value_name = "AGE", value_parser = crate::image::gc::parse_age)]
        older_than: Option<Duration>,
        /// Say what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Args)]
#[command(
    allow_missing_positional = true,
    after_help = "Examples:\n  \
                  hardroot vm-test --image img vm-tests/smoke   boot an image built before (vm-tests/smoke/make-image.sh img)\n\n\
                  With a PROFILE first, vm-test builds that profile's image (it must import test_backdoor).\n\n\
                  How to write a test: docs/testing.md."
)]
pub struct VmTestArgs {
    /// Profile of the machine under test (used by machines in test.toml that name no profile or image)
    pub profile: Option<PathBuf>,
    /// Test folder, e.g. vm-tests/xmpp-server (holds test.toml and test.rhai)
    pub test: PathBuf,
    /// Boot this image folder (disk.img, or rootfs.img, vmlinuz, initrd.img) instead of building PROFILE
    #[arg(long, value_name = "DIR")]
    pub image: Option<PathBuf>,
    /// Boot rootfs.img with QEMU's -kernel instead of the shipped disk.img
    /// through UEFI firmware: quicker, and the report says the shipped disk was not booted
    #[arg(long)]
    pub direct_kernel: bool,
    /// Output folder for serial logs, results.json and copied files [default: out/vm-test/<test>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Accelerator: auto tries KVM briefly and falls back to TCG
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    #[arg(long = "modules", value_name = "DIR")]
    pub module_dirs: Vec<PathBuf>,
    /// Cache of Debian bases for the image stage [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    #[arg(long, env = "HARDROOT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Run this script of the test folder instead of test.rhai (e.g. bench.rhai)
    #[arg(long, value_name = "FILE", default_value = "test.rhai")]
    pub script: PathBuf,
    /// Serial console lines printed per machine when the test fails
    #[arg(long, default_value = "40", value_name = "LINES")]
    pub tail: usize,
    /// Set a parameter of test.toml's [parameters] for this run, e.g. --param load_clients=50
    /// (repeatable); the value must parse as the default's type
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = name_value)]
    pub params: Vec<(String, String)>,
    /// Also write the acceptance report (one HTML page), passed or failed; see `hardroot report`
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print results.json on stdout when the test ran, passed or failed (shape: docs/json.md);
    /// progress and errors stay on stderr
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A finished VM test's output folder (results.json, exposure.json, facts/)
    pub run: PathBuf,
    /// The image or build folder the test booted (manifest.json, config.json, image-manifest.json,
    /// overlay/); copied into RUN/build first (repeatable) [default: RUN/build, else RUN itself]
    #[arg(long, value_name = "DIR")]
    pub image: Vec<PathBuf>,
    /// Compare with an older image or run folder: added, removed and changed files and packages
    #[arg(long, value_name = "OTHER_OUT")]
    pub against: Option<PathBuf>,
    /// Where to write the page [default: RUN/report.html]
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The profile to boot, e.g. profiles/xmpp-server.toml
    pub profile: PathBuf,
    /// Output folder for the image [default: out/run/<profile>]
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Host port on 127.0.0.1 forwarded to the guest's SSH port (the profile's ssh.port)
    #[arg(long, default_value_t = 2222, value_name = "PORT")]
    pub ssh_port: u16,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub memory: u32,
    /// Guest CPUs
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub cpus: u32,
    /// Extra folder of modules, searched before modules/ beside the profile (repeatable)
    #[arg(long = "modules", value_name = "DIR")]
    pub module_dirs: Vec<PathBuf>,
    /// Cache of Debian bases [default: $XDG_CACHE_HOME/hardroot or ~/.cache/hardroot]
    #[arg(long, env = "HARDROOT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Let this public key (e.g. ~/.ssh/id_ed25519.pub) log in as root too: it is added to
    /// ssh.authorized_keys for this run's image only (the profile must import `ssh`)
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Boot rootfs.img with QEMU's -kernel instead of the shipped disk.img through UEFI firmware
    #[arg(long)]
    pub direct_kernel: bool,
}

impl ImageArgs {
    pub fn request(&self) -> miette::Result<crate::image::ImageArgs> {
        let store = |r: &Option<String>| -> miette::Result<_> {
            Ok(match r {
                Some(r) => Some(
                    std::sync::Arc::new(crate::oci::bases::RegistryBases::new(r)?)
                        as std::sync::Arc<dyn crate::image::shared::BaseStore>,
                ),
                None => None,
            })
        };
        Ok(crate::image::ImageArgs {
            profiles: self.profiles.clone(),
            out: self.out.clone(),
            jobs: usize::from(self.jobs),
            from_build: self.from_build.clone(),
            from_manifest: self.from_manifest.clone(),
            snapshot: self.snapshot.clone(),
            module_dirs: self.module_dirs.clone(),
            cache: self.cache.clone(),
            rebuild_base: self.rebuild_base,
            qcow2: self.qcow2,
            no_disk: self.no_disk,
            sources: self.sources.clone(),
            quiet: self.quiet,
            shared: crate::image::shared::SharedCache {
                from: store(&self.cache_from)?,
                to: store(&self.cache_to)?,
            },
        })
    }
}

impl VerifyArgs {
    pub fn request(&self) -> crate::image::verify::VerifyArgs {
        crate::image::verify::VerifyArgs {
            out: self.out.clone(),
            build: self.build.clone(),
            snapshot: self.snapshot.clone(),
            sources: self.sources.clone(),
            work: self.work.clone(),
            quiet: self.quiet,
        }
    }
}

/// `--param NAME=VALUE`, split at the first `=` (the value may hold more).
fn name_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE, e.g. load_clients=50")),
    }
}

impl VmTestArgs {
    pub fn request(&self) -> crate::vmtest::VmTestArgs {
        use crate::vmtest::AccelChoice as A;
        crate::vmtest::VmTestArgs {
            profile: self.profile.clone(),
            test: self.test.clone(),
            image: self.image.clone(),
            direct_kernel: self.direct_kernel,
            out: self.out.clone(),
            accel: match self.accel {
                AccelChoice::Auto => A::Auto,
                AccelChoice::Kvm => A::Kvm,
                AccelChoice::Tcg => A::Tcg,
            },
            module_dirs: self.module_dirs.clone(),
            cache: self.cache.clone(),
            script: self.script.clone(),
            tail: self.tail,
            params: self.params.clone(),
        }
    }
}

impl RunArgs {
    pub fn request(&self) -> crate::run::RunArgs {
        crate::run::RunArgs {
            profile: self.profile.clone(),
            out: self.out.clone(),
            ssh_port: self.ssh_port,
            memory: self.memory,
            cpus: self.cpus,
            module_dirs: self.module_dirs.clone(),
            cache: self.cache.clone(),
            ssh_key: self.ssh_key.clone(),
            direct_kernel: self.direct_kernel,
        }
    }
}

impl PushArgs {
    pub fn request(&self) -> crate::oci::push::PushRequest {
        crate::oci::push::PushRequest {
            dir: self.dir.clone(),
            reference: self.reference.clone(),
            report: self.report.clone(),
            quiet: self.quiet,
        }
    }
}

impl PullArgs {
    pub fn request(&self) -> crate::oci::pull::PullRequest {
        crate::oci::pull::PullRequest {
            reference: self.reference.clone(),
            dir: self.out.clone(),
            quiet: self.quiet,
        }
    }
}
