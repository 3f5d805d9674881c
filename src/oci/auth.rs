//! Registry credentials: from the environment or a docker-config-style file,
//! never from the command line (argv is visible to every user of the host),
//! and never printed.
//!
//! In order: HARDROOT_REGISTRY_USERNAME + HARDROOT_REGISTRY_PASSWORD; the file
//! HARDROOT_REGISTRY_AUTH_FILE names; docker's own config ($DOCKER_CONFIG/config.json
//! or ~/.docker/config.json, credential helpers included); else anonymous.
use super::error::{OciError, Result, io_err};
use docker_credential::DockerCredential;
use oci_client::secrets::RegistryAuth;

pub const USERNAME_VAR: &str = "HARDROOT_REGISTRY_USERNAME";
pub const PASSWORD_VAR: &str = "HARDROOT_REGISTRY_PASSWORD";
pub const AUTH_FILE_VAR: &str = "HARDROOT_REGISTRY_AUTH_FILE";

/// The credentials for `registry` (HOST[:PORT]).
pub fn for_registry(registry: &str) -> Result<RegistryAuth> {
    let user = std::env::var(USERNAME_VAR).ok().filter(|v| !v.is_empty());
    let pass = std::env::var(PASSWORD_VAR).ok();
    match (user, pass) {
        (Some(u), Some(p)) => return Ok(RegistryAuth::Basic(u, p)),
        (Some(_), None) => {
            return Err(OciError::Input {
                path: USERNAME_VAR.into(),
                message: format!("{USERNAME_VAR} is set but {PASSWORD_VAR} is not"),
                hint: format!(
                    "set both, or neither (then {AUTH_FILE_VAR} or docker's config is read)"
                ),
            });
        }
        _ => {}
    }
    if let Some(file) = std::env::var_os(AUTH_FILE_VAR).filter(|v| !v.is_empty()) {
        let f = std::fs::File::open(&file).map_err(io_err("reading", &file))?;
        return match docker_credential::get_credential_from_reader(std::io::BufReader::new(f), registry) {
            Ok(c) => Ok(to_auth(c)),
            Err(docker_credential::CredentialRetrievalError::NoCredentialConfigured) => {
                Ok(RegistryAuth::Anonymous)
            }
            Err(e) => Err(OciError::Input {
                path: file.into(),
                message: format!("no usable credentials for {registry}: {e}"),
                hint: "the file is a docker config.json: {\"auths\": {\"HOST:PORT\": {\"auth\": base64(user:password)}}}".into(),
            }),
        };
    }
    Ok(docker_credential::get_credential(registry)
        .map(to_auth)
        .unwrap_or(RegistryAuth::Anonymous))
}

fn to_auth(c: DockerCredential) -> RegistryAuth {
    match c {
        DockerCredential::UsernamePassword(u, p) => RegistryAuth::Basic(u, p),
        DockerCredential::IdentityToken(t) => RegistryAuth::Bearer(t),
    }
}
