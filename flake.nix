{
  description = "hardroot: declarative, reproducible, VM-tested server images";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      # Every host tool the pipeline and the tests call: scripts/deps.sh installs the same set
      # on Debian, and tests/flake.rs checks that the two lists match and that each tool is used.
      hostTools = pkgs: with pkgs; [
        mmdebstrap e2fsprogs util-linux qemu_kvm qemu-utils   # image + vm-test
        dosfstools mtools OVMF   # bootable disk.img: its ESP without a mount, UEFI firmware for its boot test
        iproute2 iptables openssh nginx systemd curl openssl procps   # real-tool checks, test clients
        nix ssh-audit chromium   # flake parse check, SSH algorithm audit, the report in headless Chromium
        postgresql certbot pebble      # live service tests; pebble is the tests' ACME CA
        (ejabberd.override { withPgsql = true; })   # Debian: ejabberd + erlang-p1-pgsql
        (python3.withPackages (ps: [ ps.pyyaml ps.slixmpp ]))   # YAML checks, the XMPP test client
        sudo aide linuxHeaders kmod   # CIS checks: visudo -c, aide --config-check, syscall tables, modprobe -n
        docker-distribution apacheHttpd   # push/pull tests: the registry (`registry` there) and htpasswd
        gnutar zstd   # image --cache-to/--cache-from: a base travels as a tar (xattrs, ACLs, holes), zstd
        apt   # is a cached base current (apt-get on its dpkg status); apt-ftparchive for that test's repository
      ];
      # One overlay build (`hardroot build`: no network, no root) per machine of
      # profiles/ (nix/profiles.nix: every profile but the fragments, so a new
      # profile needs no change here), as package and check `profile-<name>`:
      # Nix remote builders and Hydra build the whole tree of profiles. The
      # image stage needs root and a Debian mirror, so it runs outside the
      # sandbox (docs/fleet.md); tests/flake.rs evaluates these outputs.
      profileBuilds = pkgs: nixpkgs.lib.mapAttrs' (name: _: {
        name = "profile-${name}";
        value = pkgs.runCommand "hardroot-profile-${name}" {
          nativeBuildInputs = [ self.packages.${pkgs.system}.default ];
        } ''
          # The output is staged beside -o and renamed: stage it in the build folder.
          hardroot build ${self}/profiles/${name}.toml -o overlay-build
          mv overlay-build $out
        '';
      }) (import ./nix/profiles.nix ./profiles);
    in {
      packages = forAll (pkgs: {
        default = pkgs.rustPlatform.buildRustPackage {
          pname = "hardroot";
          version = "0.1.0";
          src = self;
          cargoLock.lockFile = ./Cargo.lock;
          # The integration tests need root, QEMU and a Debian mirror; `checks` runs them separately.
          doCheck = false;
          postInstall = ''
            mkdir -p $out/share/hardroot
            cp -r modules profiles vm-tests $out/share/hardroot/
          '';
          meta.mainProgram = "hardroot";
        };
      } // profileBuilds pkgs);

      apps = forAll (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.system}.default}/bin/hardroot";
        };
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt ] ++ hostTools pkgs;
          HARDROOT_MODULES = "./modules";
        };
      });

      checks = forAll (pkgs: {
        # Unit, CLI, corpus and real-tool tests; the image and VM tests need a Debian
        # mirror and root, so they run through scripts/test.sh outside the sandbox.
        unit = self.packages.${pkgs.system}.default.overrideAttrs (old: {
          doCheck = true;
          nativeCheckInputs = hostTools pkgs;
          checkFlags = [ "--skip" "image" "--skip" "vm" ];
        });
      } // profileBuilds pkgs);
    };
}
