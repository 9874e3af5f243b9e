//! Test certificates made with the `openssl` command line: a CA, a server
//! certificate for `localhost` and 127.0.0.1 (RSA), a client certificate
//! for `prometheus.test` signed by the CA, and a self-signed client certificate no CA vouches for.

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Write `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key` and
/// `rogue.pem`/`rogue.key` into `dir`.
pub fn make(dir: &Path) -> Result<(), String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-days",
                "2",
                "-subj",
                "/CN=segwatch test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    openssl(
        dir,
        &[
            &["req"],
            &ec[..],
            &[
                "-subj",
                "/CN=prometheus",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
            ],
        ]
        .concat(),
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("client.ext"),
        "subjectAltName=DNS:prometheus.test\nextendedKeyUsage=clientAuth\n",
    )
    .map_err(|e| e.to_string())?;
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}.pem"),
            ],
        )?;
    }
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-days",
                "2",
                "-subj",
                "/CN=rogue",
                "-addext",
                "extendedKeyUsage=clientAuth",
                "-keyout",
                "rogue.key",
                "-out",
                "rogue.pem",
            ],
        ]
        .concat(),
    )
}
