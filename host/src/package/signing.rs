//! Signatures: a detached ed25519 signature over a bundle's bytes, by a
//! key the host trusts. Keys and signatures are hex text files:
//! `<name>.key` (the secret, mode 0600), `<name>.pub`, `<bundle>.sig`.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::{io, PackageError};

/// Makes a key pair: writes `<prefix>.key` (0600) and `<prefix>.pub`;
/// returns the public key in hex.
pub fn keygen(prefix: &Path) -> Result<String, PackageError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| PackageError::Signature(format!("no randomness for a key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let secret = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    for path in [&secret, &public] {
        if path.exists() {
            return Err(PackageError::Signature(format!(
                "{} exists already: not overwritten",
                path.display()
            )));
        }
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret)
            .map_err(io(&secret))?;
        writeln!(f, "{}", hex::encode(key.to_bytes())).map_err(io(&secret))?;
    }
    let hex_pub = hex::encode(key.verifying_key().to_bytes());
    std::fs::write(&public, format!("{hex_pub}\n")).map_err(io(&public))?;
    Ok(hex_pub)
}

fn hex_bytes<const N: usize>(text: &str, what: &str) -> Result<[u8; N], PackageError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| PackageError::Signature(format!("{what} is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| PackageError::Signature(format!("{what} is not {N} bytes")))
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SigningKey, PackageError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(SigningKey::from_bytes(&hex_bytes::<32>(
        &text,
        "the secret key",
    )?))
}

/// A public key, from its hex text.
pub fn public_key(text: &str) -> Result<VerifyingKey, PackageError> {
    VerifyingKey::from_bytes(&hex_bytes::<32>(text, "the public key")?)
        .map_err(|e| PackageError::Signature(format!("not a public key: {e}")))
}

/// The detached signature of `bundle`, in hex.
pub fn sign(key: &SigningKey, bundle: &[u8]) -> String {
    hex::encode(key.sign(bundle).to_bytes())
}

/// Checks `signature` (hex) over `bundle` against every trusted key; the
/// index of the key that signed it.
pub fn verify(
    bundle: &[u8],
    signature: &str,
    trusted: &[VerifyingKey],
) -> Result<usize, PackageError> {
    let sig = Signature::from_bytes(&hex_bytes::<64>(signature, "the signature")?);
    trusted
        .iter()
        .position(|k| k.verify(bundle, &sig).is_ok())
        .ok_or_else(|| {
            PackageError::Signature(format!(
                "it is not signed by any of the {} trusted keys (or the bundle was changed after signing)",
                trusted.len()
            ))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_not_after_a_change() {
        let dir = std::env::temp_dir().join(format!("iglu-sign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = keygen(&dir.join("a")).unwrap();
        let b = keygen(&dir.join("b")).unwrap();
        assert!(keygen(&dir.join("a")).is_err(), "never overwritten");
        let key = read_secret(&dir.join("a.key")).unwrap();
        let bundle = b"the bundle's bytes".to_vec();
        let sig = sign(&key, &bundle);
        let keys = [public_key(&b).unwrap(), public_key(&a).unwrap()];
        assert_eq!(verify(&bundle, &sig, &keys).unwrap(), 1);
        assert!(verify(&bundle, &sig, &keys[..1]).is_err());
        let mut changed = bundle.clone();
        changed[0] ^= 1;
        assert!(verify(&changed, &sig, &keys).is_err());
        assert!(verify(&bundle, "zz", &keys).is_err());
    }
}
