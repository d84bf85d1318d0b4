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
    MicrosoftIdentityLinked,
    MicrosoftIdentityUnlinked,
    MicrosoftLinkCreated,
    MicrosoftSignInSettingsChanged,
    GraphCredentialCreated,
    GraphCredentialChanged,
    GraphCredentialSecretReplaced,
    GraphCredentialDeleted,
    SegmentCreated,
    SegmentChanged,
    SegmentDeleted,
    MailboxCreated,
    MailboxChanged,
    MailboxMoved,
    MailboxDeleted,
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
            Self::MicrosoftIdentityLinked => "user.microsoft_linked",
            Self::MicrosoftIdentityUnlinked => "user.microsoft_unlinked",
            Self::MicrosoftLinkCreated => "user.microsoft_link_created",
            Self::MicrosoftSignInSettingsChanged => "settings.microsoft_sign_in_changed",
            Self::GraphCredentialCreated => "graph_credential.created",
            Self::GraphCredentialChanged => "graph_credential.changed",
            Self::GraphCredentialSecretReplaced => "graph_credential.secret_replaced",
            Self::GraphCredentialDeleted => "graph_credential.deleted",
            Self::SegmentCreated => "segment.created",
            Self::SegmentChanged => "segment.changed",
            Self::SegmentDeleted => "segment.deleted",
            Self::MailboxCreated => "mailbox.created",
            Self::MailboxChanged => "mailbox.changed",
            Self::MailboxMoved => "mailbox.moved",
            Self::MailboxDeleted => "mailbox.deleted",
        }
    }
}
