//! Rules of the certificates Portico generates: when a client secret may go, and when the
//! next certificate may replace what an app signs with.

use super::AuthMethod;

/// What an app proves itself to Microsoft with now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentProof {
    /// Nothing: a public client (Sign in with Microsoft with PKCE only).
    Nothing,
    ClientSecret,
    Certificate,
}

impl CurrentProof {
    pub fn of(auth_method: AuthMethod, has_secret: bool) -> Self {
        match (auth_method, has_secret) {
            (AuthMethod::Certificate, _) => Self::Certificate,
            (AuthMethod::ClientSecret, true) => Self::ClientSecret,
            (AuthMethod::ClientSecret, false) => Self::Nothing,
        }
    }

    /// Whether "Renew certificate" applies: only while something works that the next
    /// certificate must not interrupt. A public client saves the Certificate choice instead.
    pub fn may_renew(self) -> bool {
        self != Self::Nothing
    }
}

/// What saving settings does with their certificates, from `current` to the `chosen` way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateOnSave {
    Keep,
    /// Nothing works yet that a certificate would interrupt: it signs from now on.
    UseNew,
    /// A client secret signs in now: it keeps doing so until the admin uploads the new
    /// certificate to Azure and switches to it.
    PrepareNext,
    /// Back to a client secret (or none): the certificates go.
    Drop,
}

pub fn certificate_on_save(current: CurrentProof, chosen: AuthMethod) -> CertificateOnSave {
    match (current, chosen) {
        (CurrentProof::Certificate, AuthMethod::Certificate)
        | (CurrentProof::Nothing | CurrentProof::ClientSecret, AuthMethod::ClientSecret) => {
            CertificateOnSave::Keep
        }
        (CurrentProof::Nothing, AuthMethod::Certificate) => CertificateOnSave::UseNew,
        (CurrentProof::ClientSecret, AuthMethod::Certificate) => CertificateOnSave::PrepareNext,
        (CurrentProof::Certificate, AuthMethod::ClientSecret) => CertificateOnSave::Drop,
    }
}

/// What saving settings does with the stored client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOnSave {
    Keep,
    /// By the secret the admin typed.
    Replace,
    Drop,
}

/// When a secret may be dropped: a secret in use stays until the certificate replacing it
/// is switched to (a secret typed meanwhile is not kept); one that a certificate replaces at
/// once, or that the admin removes, goes. Otherwise a typed secret replaces it.
pub fn secret_on_save(
    current: CurrentProof,
    chosen: AuthMethod,
    typed_secret: bool,
    remove_secret: bool,
) -> SecretOnSave {
    match certificate_on_save(current, chosen) {
        CertificateOnSave::PrepareNext => SecretOnSave::Keep,
        _ if chosen == AuthMethod::Certificate => SecretOnSave::Drop,
        _ if typed_secret => SecretOnSave::Replace,
        _ if remove_secret => SecretOnSave::Drop,
        _ => SecretOnSave::Keep,
    }
}

/// What Microsoft answered to a token request signed with the next certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextCertificateCheck {
    Accepted,
    Refused,
    Unreachable,
    /// There is nothing to ask: an app-only token needs a directory, and sign-in settings
    /// that admit any Microsoft account name none.
    NotPossible,
}

/// When a certificate may be switched to: once Microsoft accepted a token signed with it,
/// so a certificate not yet uploaded to Azure never replaces one that works; or, when that
/// cannot be asked, on the admin's word.
pub fn may_switch(check: NextCertificateCheck) -> bool {
    matches!(
        check,
        NextCertificateCheck::Accepted | NextCertificateCheck::NotPossible
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROOFS: [CurrentProof; 3] = [
        CurrentProof::Nothing,
        CurrentProof::ClientSecret,
        CurrentProof::Certificate,
    ];

    #[test]
    fn only_a_working_proof_is_renewed_rather_than_replaced() {
        assert_eq!(
            CurrentProof::of(AuthMethod::ClientSecret, false),
            CurrentProof::Nothing
        );
        assert_eq!(
            CurrentProof::of(AuthMethod::Certificate, true),
            CurrentProof::Certificate
        );
        assert!(!CurrentProof::Nothing.may_renew());
        assert!(CurrentProof::ClientSecret.may_renew());
        assert!(CurrentProof::Certificate.may_renew());
    }

    #[test]
    fn a_certificate_replaces_a_secret_in_use_only_through_the_next_slot() {
        use CertificateOnSave::*;
        let chosen = AuthMethod::Certificate;
        assert_eq!(certificate_on_save(CurrentProof::Nothing, chosen), UseNew);
        assert_eq!(
            certificate_on_save(CurrentProof::ClientSecret, chosen),
            PrepareNext
        );
        assert_eq!(certificate_on_save(CurrentProof::Certificate, chosen), Keep);
        let chosen = AuthMethod::ClientSecret;
        assert_eq!(certificate_on_save(CurrentProof::Nothing, chosen), Keep);
        assert_eq!(
            certificate_on_save(CurrentProof::ClientSecret, chosen),
            Keep
        );
        assert_eq!(certificate_on_save(CurrentProof::Certificate, chosen), Drop);
    }

    #[test]
    fn a_secret_in_use_stays_until_the_switch_whatever_is_typed() {
        for (typed, remove) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(
                secret_on_save(
                    CurrentProof::ClientSecret,
                    AuthMethod::Certificate,
                    typed,
                    remove
                ),
                SecretOnSave::Keep
            );
            for current in [CurrentProof::Nothing, CurrentProof::Certificate] {
                assert_eq!(
                    secret_on_save(current, AuthMethod::Certificate, typed, remove),
                    SecretOnSave::Drop
                );
            }
        }
    }

    #[test]
    fn with_a_client_secret_the_admin_replaces_removes_or_keeps_it() {
        for current in PROOFS {
            let chosen = AuthMethod::ClientSecret;
            assert_eq!(
                secret_on_save(current, chosen, true, true),
                SecretOnSave::Replace
            );
            assert_eq!(
                secret_on_save(current, chosen, false, true),
                SecretOnSave::Drop
            );
            assert_eq!(
                secret_on_save(current, chosen, false, false),
                SecretOnSave::Keep
            );
        }
    }

    #[test]
    fn a_switch_waits_for_microsoft_unless_it_cannot_be_asked() {
        assert!(may_switch(NextCertificateCheck::Accepted));
        assert!(may_switch(NextCertificateCheck::NotPossible));
        assert!(!may_switch(NextCertificateCheck::Refused));
        assert!(!may_switch(NextCertificateCheck::Unreachable));
    }
}
