//! Certificate generation (rcgen) and writing a pair to disk in one step.
//!
//! Every CA gets a random serial and a subject of its own (its serial in
//! the common name), and every certificate carries a Subject Key Identifier;
//! serving certificates name their CA's key with an Authority Key
//! Identifier. Without them OpenSSL (and others) pick a CA from a bundle by
//! subject alone, so a bundle holding an old and a new CA verified only in
//! one order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use crate::cli::CertsArgs;
use crate::tls::TlsError;

/// Validity of the CA written by `certs`.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 86400);
/// Default validity of a serving certificate.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 86400);
/// Certificates start this long before they are made, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(300);

/// `linnix-injector certs`: a fresh CA and serving certificate in `args.out`.
pub fn run(args: CertsArgs) -> Result<(), TlsError> {
    let generated = generate(&args.dns, args.cert_validity, CA_VALIDITY)?;
    write_files(&args.out, &generated)?;
    tracing::info!(dir = %args.out.display(), dns = ?args.dns, "wrote ca.crt, tls.crt, tls.key");
    Ok(())
}

/// A CA and a serving certificate it signed, all PEM.
#[derive(Clone)]
pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// When it was made (validity counts from here, not from the backdated
    /// notBefore).
    pub issued: OffsetDateTime,
    /// notAfter of the serving certificate.
    pub not_after: OffsetDateTime,
}

/// Makes a fresh CA (valid for `ca_validity`) and a serving certificate for
/// `dns` names (valid for `validity`, never beyond the CA).
pub fn generate(
    dns: &[String],
    validity: Duration,
    ca_validity: Duration,
) -> Result<Generated, TlsError> {
    let issued = OffsetDateTime::now_utc();
    let ca_not_after = after(issued, ca_validity)?;
    let not_after = after(issued, validity)?.min(ca_not_after);
    let not_before = issued - BACKDATE;

    let ca_serial = random_serial()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let hex: String = ca_serial
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("linnix-injector CA {hex}"));
    ca_params.serial_number = Some(SerialNumber::from_slice(&ca_serial));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = ca_not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(dns.to_vec())?;
    if let Some(first) = dns.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, the SKI.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        issued,
        not_after,
    })
}

fn after(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime, TlsError> {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .filter(|t| t.year() <= 9999)
        .ok_or(TlsError::Validity(d))
}

/// 16 random bytes, the top bit clear so the DER integer stays positive.
fn random_serial() -> Result<[u8; 16], TlsError> {
    use ring::rand::SecureRandom;
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| TlsError::Random)?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01; // never a leading zero byte
    Ok(serial)
}

/// The files `write_files` makes, in `dir`.
pub const FILES: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, all
/// three replaced in one step.
///
/// They go into a fresh directory `dir/.certs-<time>`, and the symlink
/// `dir/..data` is switched to it by a rename; `dir/tls.crt` and the others
/// are symlinks through `..data` (the layout of Kubernetes Secret volumes).
/// A reader never sees a new certificate next to an old key, except when it
/// opens the two files on either side of the switch: the reloader re-reads
/// before it calls a pair bad (see [`crate::reload::spawn_reloader`]).
pub fn write_files(dir: &Path, g: &Generated) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let stamp = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let generation = format!(".certs-{stamp}-{}", std::process::id());
    let gen_dir = dir.join(&generation);
    std::fs::create_dir(&gen_dir).map_err(io(&gen_dir))?;
    for (name, content, mode) in [
        ("ca.crt", &g.ca_pem, 0o644),
        ("tls.crt", &g.cert_pem, 0o644),
        ("tls.key", &g.key_pem, 0o600),
    ] {
        let path = gen_dir.join(name);
        // Created with its final mode: the key is never readable by others,
        // not even briefly.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(content.as_bytes()).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io(&path))?;
    }
    sync_dir(&gen_dir)?;
    let data = dir.join("..data");
    let previous = std::fs::read_link(&data).ok();
    replace_symlink(dir, Path::new(&generation), &data)?;
    for name in FILES {
        let link = dir.join(name);
        let target = Path::new("..data").join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            replace_symlink(dir, &target, &link)?;
        }
    }
    sync_dir(dir)?;
    if let Some(old) = previous.filter(|p| p.as_os_str() != generation.as_str()) {
        // A reader that resolved the old generation keeps its open files.
        let old = dir.join(old);
        if old.starts_with(dir)
            && old
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".certs-"))
        {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(())
}

/// Points `link` at `target` with a rename, so that it is never missing.
fn replace_symlink(dir: &Path, target: &Path, link: &Path) -> Result<(), TlsError> {
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|source| TlsError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, link).map_err(|source| TlsError::Io {
        path: link.to_owned(),
        source,
    })
}

fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| TlsError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_as_asked_and_never_beyond_the_ca() {
        let g = generate(&["a".into()], Duration::from_secs(6), CA_VALIDITY).unwrap();
        assert_eq!(g.not_after - g.issued, time::Duration::seconds(6));
        let g = generate(
            &["a".into()],
            Duration::from_secs(600),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(g.not_after - g.issued, time::Duration::seconds(60));
        assert!(matches!(
            generate(&["a".into()], Duration::from_secs(u64::MAX), CA_VALIDITY),
            Err(TlsError::Validity(_))
        ));
    }

    #[test]
    fn files_are_replaced_together_and_the_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A directory written by an older `certs`, with plain files.
        for f in FILES {
            std::fs::write(dir.path().join(f), "old").unwrap();
        }
        let first = generate(&["x.y.svc".into()], SERVING_VALIDITY, CA_VALIDITY).unwrap();
        write_files(dir.path(), &first).unwrap();
        let second = generate(&["x.y.svc".into()], SERVING_VALIDITY, CA_VALIDITY).unwrap();
        write_files(dir.path(), &second).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(read("tls.crt"), second.cert_pem);
        assert_eq!(read("tls.key"), second.key_pem);
        assert_eq!(read("ca.crt"), second.ca_pem);
        let mode = std::fs::metadata(dir.path().join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // One generation left, nothing else behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names[1].starts_with(".certs-"), "{names:?}");
        assert_eq!(names[0], "..data");
        assert_eq!(&names[2..], ["ca.crt", "tls.crt", "tls.key"]);
    }
}
