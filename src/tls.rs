//! The process's TLS provider. reqwest (`vane watch`'s server, an OpenID
//! Connect issuer over https) uses rustls without a provider of its own:
//! its default, aws-lc-rs, needs cmake to build and native-tls needs
//! OpenSSL's headers, while ring builds with only a C compiler. A reqwest
//! client built before this runs panics, so every entry point calls it first.

/// Installs ring as rustls's provider for the process; later calls (and a
/// provider installed by someone else first) change nothing.
// rustls 0.23.48 deprecates ring's provider because it has no
// post-quantum key exchange (aws-lc-rs has); we accept classical key
// exchange to keep the build to a C compiler.
#[allow(deprecated)]
pub fn install() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
