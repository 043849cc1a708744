//! TLS to the server: rustls (the one TLS stack salve uses, with the aws-lc-rs provider),
//! used when the URL's `sslmode` asks for it (`require`; `disable` never, `prefer` if
//! offered). The server's certificate must chain to `store.ca_file` when set, else to
//! the platform's roots, and name the host.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

pub(super) fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("store TLS: {e}")))?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(path).map_err(|e| {
                StoreError::Config(format!("store.ca_file {}: {e}", path.display()))
            })?;
            let not_pem = |why: String| {
                StoreError::Config(format!(
                    "store.ca_file {}: not PEM certificates: {why}",
                    path.display()
                ))
            };
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| not_pem(e.to_string()))?;
            if certificates.is_empty() {
                return Err(not_pem("no -----BEGIN CERTIFICATE----- block".into()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| not_pem(e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| StoreError::Config(format!("store TLS: platform roots: {e}")))?
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}
