//! Certificates for the NBD TLS tests, made with openssl at test time as
//! docs/export.md shows: P-256 keys, a CA, and certificates it signs.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Extensions of a server certificate for `san` (openssl's syntax, e.g.
/// "IP:127.0.0.1,DNS:localhost").
pub fn server_ext(san: &str) -> String {
    format!(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
    )
}

pub const CLIENT_EXT: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl (scripts/install-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA in `dir`: NAME-cert.pem and NAME-key.pem.
pub fn new_ca(dir: &Path, name: &str) {
    #[rustfmt::skip]
    openssl(dir, &[
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", &format!("{name}-key.pem"), "-out", &format!("{name}-cert.pem"),
        "-days", "2", "-subj", &format!("/CN={name}"),
    ]);
}

/// A new key and certificate in `dir` (NAME-key.pem, NAME-cert.pem),
/// signed by the CA `ca` there, with the extensions `ext`. The key is
/// mode 0600, as duetd wants a server's.
pub fn signed(dir: &Path, name: &str, ca: &str, ext: &str) {
    use std::os::unix::fs::PermissionsExt;
    let (key, csr, cert, extfile) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}-cert.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).expect("extensions");
    #[rustfmt::skip]
    openssl(dir, &[
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}"),
    ]);
    #[rustfmt::skip]
    openssl(dir, &[
        "x509", "-req", "-in", &csr, "-CA", &format!("{ca}-cert.pem"),
        "-CAkey", &format!("{ca}-key.pem"), "-CAcreateserial", "-days", "2",
        "-extfile", &extfile, "-out", &cert,
    ]);
    std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
}

/// A client's folder as libnbd and QEMU read it: ca-cert.pem and, when
/// `client` is given, client-cert.pem and client-key.pem (copied from
/// CLIENT-cert.pem and CLIENT-key.pem in `pki`).
pub fn client_dir(pki: &Path, dir: &Path, ca: &str, client: Option<&str>) {
    std::fs::create_dir_all(dir).expect("client dir");
    std::fs::copy(pki.join(format!("{ca}-cert.pem")), dir.join("ca-cert.pem")).expect("ca");
    if let Some(c) = client {
        for part in ["cert", "key"] {
            std::fs::copy(
                pki.join(format!("{c}-{part}.pem")),
                dir.join(format!("client-{part}.pem")),
            )
            .expect("client file");
        }
    }
}
