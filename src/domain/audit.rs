/// Everything the audit log records. Stored by name, so names never change once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    TenantCreated,
    SignIn,
    SignInFailed,
    SignInThrottled,
    /// A Microsoft sign-in that signed nobody in; kept apart from password failures so it
    /// never counts toward the password throttle.
    MicrosoftSignInFailed,
    SignOut,
    UserCreated,
    UserRoleChanged,
    UserDisabled,
    UserEnabled,
    UserPasswordReset,
    OwnPasswordChanged,
    /// A user without a password set a first one, shortly after signing in with Microsoft.
    OwnPasswordSet,
    /// A wrong current password when changing one's own: counts toward throttling.
    OwnPasswordRejected,
    MicrosoftIdentityLinked,
    MicrosoftIdentityUnlinked,
    MicrosoftLinkCreated,
    /// A one-time link that is unknown, used or expired: counts toward throttling.
    MicrosoftLinkRejected,
    MicrosoftSignInSettingsChanged,
    /// A certificate generated to replace the one Sign in with Microsoft uses.
    MicrosoftSignInCertificateCreated,
    /// Sign in with Microsoft signs with its new certificate from now on.
    MicrosoftSignInCertificateSwitched,
    GraphCredentialCreated,
    GraphCredentialChanged,
    GraphCredentialSecretReplaced,
    /// A certificate generated to replace the credential's secret or certificate.
    GraphCredentialCertificateCreated,
    /// The credential signs with its new certificate from now on.
    GraphCredentialCertificateSwitched,
    GraphCredentialDeleted,
    SegmentCreated,
    SegmentChanged,
    SegmentDeleted,
    MailboxCreated,
    MailboxChanged,
    MailboxMoved,
    MailboxDeleted,
    OAuthConnectionCreated,
    OAuthConnectionChanged,
    OAuthConnectionSecretReplaced,
    /// An admin entered or corrected the stored client secret's "Secret expires on".
    OAuthConnectionSecretExpiryChanged,
    OAuthConnectionAuthenticated,
    OAuthConnectionNeedsReauthentication,
    OAuthConnectionDeleted,
    ExpiryAlertSettingsChanged,
    /// Portico told the tenant's recipients that something expires or fails.
    ExpiryAlertSent,
    /// An expiry alert could not be sent (its first failure; retries are only logged).
    ExpiryAlertFailed,
    /// An expiry alert failed for 7 days and is tried no more.
    ExpiryAlertGivenUp,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantCreated => "tenant.created",
            Self::SignIn => "sign_in",
            Self::SignInFailed => "sign_in.failed",
            Self::SignInThrottled => "sign_in.throttled",
            Self::MicrosoftSignInFailed => "sign_in.microsoft_failed",
            Self::SignOut => "sign_out",
            Self::UserCreated => "user.created",
            Self::UserRoleChanged => "user.role_changed",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::UserPasswordReset => "user.password_reset",
            Self::OwnPasswordChanged => "user.own_password_changed",
            Self::OwnPasswordSet => "user.own_password_set",
            Self::OwnPasswordRejected => "user.own_password_rejected",
            Self::MicrosoftIdentityLinked => "user.microsoft_linked",
            Self::MicrosoftIdentityUnlinked => "user.microsoft_unlinked",
            Self::MicrosoftLinkCreated => "user.microsoft_link_created",
            Self::MicrosoftLinkRejected => "user.microsoft_link_rejected",
            Self::MicrosoftSignInSettingsChanged => "settings.microsoft_sign_in_changed",
            Self::MicrosoftSignInCertificateCreated => {
                "settings.microsoft_sign_in_certificate_created"
            }
            Self::MicrosoftSignInCertificateSwitched => {
                "settings.microsoft_sign_in_certificate_switched"
            }
            Self::GraphCredentialCreated => "graph_credential.created",
            Self::GraphCredentialChanged => "graph_credential.changed",
            Self::GraphCredentialSecretReplaced => "graph_credential.secret_replaced",
            Self::GraphCredentialCertificateCreated => "graph_credential.certificate_created",
            Self::GraphCredentialCertificateSwitched => "graph_credential.certificate_switched",
            Self::GraphCredentialDeleted => "graph_credential.deleted",
            Self::SegmentCreated => "segment.created",
            Self::SegmentChanged => "segment.changed",
            Self::SegmentDeleted => "segment.deleted",
            Self::MailboxCreated => "mailbox.created",
            Self::MailboxChanged => "mailbox.changed",
            Self::MailboxMoved => "mailbox.moved",
            Self::MailboxDeleted => "mailbox.deleted",
            Self::OAuthConnectionCreated => "oauth_connection.created",
            Self::OAuthConnectionChanged => "oauth_connection.changed",
            Self::OAuthConnectionSecretReplaced => "oauth_connection.secret_replaced",
            Self::OAuthConnectionSecretExpiryChanged => "oauth_connection.secret_expiry_changed",
            Self::OAuthConnectionAuthenticated => "oauth_connection.authenticated",
            Self::OAuthConnectionNeedsReauthentication => "oauth_connection.needs_reauthentication",
            Self::OAuthConnectionDeleted => "oauth_connection.deleted",
            Self::ExpiryAlertSettingsChanged => "settings.expiry_alerts_changed",
            Self::ExpiryAlertSent => "expiry_alert.sent",
            Self::ExpiryAlertFailed => "expiry_alert.failed",
            Self::ExpiryAlertGivenUp => "expiry_alert.given_up",
        }
    }
}
