//! The Users page: admins manage the people of their own tenant.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};
use super::{Layout, changed_meanwhile, format_time};
use crate::app::AppState;
use crate::crypto::random_token;
use crate::domain::{
    AuditAction, DisplayName, EmailAddress, FieldErrors, NewPassword, Role, UserStatus,
};
use crate::services::accounts;
use crate::store::identities;
use crate::store::users::{self, ChangeUserError, CreateUserError, NewUser, User};
use crate::store::{Page, Paged};

const PAGE_SIZE: u32 = 50;

/// A user as the pages show them.
pub struct UserView {
    pub id: String,
    /// The linked Microsoft account's sign-in name, and its directory.
    pub microsoft: Option<(String, String)>,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub has_password: bool,
    pub created_at: String,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_str().to_owned(),
            microsoft: None,
            display_name: user.display_name,
            email: user.email,
            role: user.role,
            active: user.status == UserStatus::Active,
            has_password: user.has_password,
            created_at: format_time(user.created_at),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "users/list.html")]
pub struct UsersPage {
    layout: Layout,
    slug: String,
    search: String,
    users: Vec<UserView>,
    page: u32,
    has_next: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    page: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Query(query): Query<ListQuery>,
) -> Result<UsersPage, AppError> {
    let search = query.q.unwrap_or_default().trim().to_owned();
    let page = Page::new(query.page, PAGE_SIZE);
    let Paged {
        rows,
        page,
        has_next,
    } = users::list(
        &state.db,
        &ctx.tenant.id,
        Some(search.as_str()).filter(|s| !s.is_empty()),
        page,
    )
    .await?;
    let ids: Vec<&str> = rows.iter().map(|user| user.id.as_str()).collect();
    let mut linked = identities::for_users(&state.db, &ctx.tenant.id, &ids).await?;
    let users = rows
        .into_iter()
        .map(|user| UserView {
            microsoft: linked
                .remove(user.id.as_str())
                .map(|identity| (identity.username, identity.tid)),
            ..UserView::from(user)
        })
        .collect();
    Ok(UsersPage {
        layout: ctx.layout("Users", "users"),
        slug: ctx.tenant.slug.clone(),
        search,
        users,
        page: page.number,
        has_next,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "users/new.html")]
pub struct NewUserPage {
    layout: Layout,
    slug: String,
    form: NewUserForm,
    errors: FieldErrors,
}

/// What the admin typed; the password is never sent back.
#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default = "default_role")]
    role: String,
    #[serde(default)]
    password: Option<SecretString>,
}

fn default_role() -> String {
    Role::Agent.as_str().to_owned()
}

fn new_user_page(ctx: &TenantCtx, form: NewUserForm, errors: FieldErrors) -> NewUserPage {
    NewUserPage {
        layout: ctx.layout("Add a user", "users"),
        slug: ctx.tenant.slug.clone(),
        form,
        errors,
    }
}

pub async fn new(AdminCtx(ctx): AdminCtx) -> NewUserPage {
    let form = NewUserForm {
        display_name: String::new(),
        email: String::new(),
        role: default_role(),
        password: None,
    };
    new_user_page(&ctx, form, FieldErrors::new())
}

pub async fn create(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(mut form): Form<NewUserForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::new();
    let display_name = errors.check("display_name", DisplayName::parse(&form.display_name));
    let email = errors.check("email", EmailAddress::parse(&form.email));
    let role = errors.check("role", Role::parse(&form.role));
    let password = errors.check(
        "password",
        NewPassword::parse(
            form.password
                .take()
                .unwrap_or_else(|| SecretString::from("")),
        ),
    );
    let (Some(display_name), Some(email), Some(role), Some(password)) =
        (display_name, email, role, password)
    else {
        return Ok(Rejected(new_user_page(&ctx, form, errors)).into_response());
    };
    let user = NewUser {
        email: email.clone(),
        display_name,
        role,
        password_hash: Some(state.passwords.hash(password.into_secret()).await?),
    };
    let id = match users::create(&state.db, &ctx.tenant.id, &user).await {
        Ok(id) => id,
        Err(CreateUserError::EmailTaken) => {
            let errors = FieldErrors::single("email", "A user with this email already exists.");
            return Ok(Rejected(new_user_page(&ctx, form, errors)).into_response());
        }
        Err(CreateUserError::Database(err)) => return Err(err.into()),
    };
    let detail = format!("role {}", role.label());
    ctx.audit(
        &state,
        AuditAction::UserCreated,
        email.as_str(),
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/users/{}", id.as_str()))).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "users/show.html")]
pub struct UserPage {
    layout: Layout,
    slug: String,
    user: UserView,
    is_self: bool,
    errors: FieldErrors,
    notice: Option<&'static str>,
    /// A one-time link just made, shown once and never stored in plaintext.
    link_url: Option<String>,
    /// The role the role form shows as chosen.
    role_choice: String,
    /// The user's version that the page's forms carry.
    version: i64,
}

#[derive(Deserialize)]
pub struct ShowQuery {
    done: Option<String>,
}

/// Confirmation shown after a change, keyed by the `done` query parameter.
fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "role" => Some("Role changed."),
        "status" => Some("Status changed."),
        "unlinked" => Some("Microsoft account unlinked."),
        "password" => {
            Some("Password reset. Give the new password to the user in person or by phone.")
        }
        _ => None,
    }
}

async fn user_page(
    state: &AppState,
    ctx: &TenantCtx,
    id: &str,
    errors: FieldErrors,
    notice: Option<&'static str>,
) -> Result<UserPage, AppError> {
    let user = users::get(&state.db, &ctx.tenant.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let microsoft = identities::for_users(&state.db, &ctx.tenant.id, &[user.id.as_str()])
        .await?
        .remove(user.id.as_str())
        .map(|identity| (identity.username, identity.tid));
    Ok(UserPage {
        layout: ctx.layout(user.display_name.clone(), "users"),
        slug: ctx.tenant.slug.clone(),
        is_self: user.id == ctx.user.id,
        role_choice: user.role.as_str().to_owned(),
        version: user.version,
        user: UserView {
            microsoft,
            ..user.into()
        },
        errors,
        notice,
        link_url: None,
    })
}

pub async fn show(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<ShowQuery>,
) -> Result<UserPage, AppError> {
    user_page(
        &state,
        &ctx,
        &id,
        FieldErrors::new(),
        notice(query.done.as_deref()),
    )
    .await
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
    /// The user's version when the page was loaded; the same in the forms below.
    #[serde(default)]
    version: i64,
}

pub async fn change_role(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<RoleForm>,
) -> Result<Response, AppError> {
    let user = users::get(&state.db, &ctx.tenant.id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let role = match Role::parse(&form.role) {
        Ok(role) => role,
        Err(message) => return rejected(&state, &ctx, &id, form.version, "role", message).await,
    };
    match users::set_role(&state.db, &ctx.tenant.id, &user.id, form.version, role).await {
        Err(ChangeUserError::LastActiveAdmin) => {
            let message = "This is the last active admin; make another user admin first.";
            return rejected(&state, &ctx, &id, form.version, "role", message.into()).await;
        }
        Err(ChangeUserError::Stale) => {
            let mut page = changed_meanwhile_page(&state, &ctx, &id).await?;
            page.role_choice = role.as_str().to_owned();
            return Ok(Conflict(page).into_response());
        }
        result => result?,
    }
    let detail = format!("{} → {}", user.role.label(), role.label());
    ctx.audit(
        &state,
        AuditAction::UserRoleChanged,
        &user.email,
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/users/{id}?done=role"))).into_response())
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    version: i64,
}

pub async fn change_status(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<StatusForm>,
) -> Result<Response, AppError> {
    let user = users::get(&state.db, &ctx.tenant.id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let status = match UserStatus::parse(&form.status) {
        Ok(status) => status,
        Err(message) => {
            return rejected(&state, &ctx, &id, form.version, "status", message).await;
        }
    };
    match users::set_status(&state.db, &ctx.tenant.id, &user.id, form.version, status).await {
        Err(ChangeUserError::LastActiveAdmin) => {
            let message = "This is the last active admin; make another user admin first.";
            return rejected(&state, &ctx, &id, form.version, "status", message.into()).await;
        }
        Err(ChangeUserError::Stale) => {
            let page = changed_meanwhile_page(&state, &ctx, &id).await?;
            return Ok(Conflict(page).into_response());
        }
        result => result?,
    }
    let action = match status {
        UserStatus::Active => AuditAction::UserEnabled,
        UserStatus::Disabled => AuditAction::UserDisabled,
    };
    ctx.audit(&state, action, &user.email, "", ip).await?;
    Ok(Redirect::to(&ctx.path(&format!("/users/{id}?done=status"))).into_response())
}

#[derive(Deserialize)]
pub struct ResetPasswordForm {
    password: Option<SecretString>,
    #[serde(default)]
    version: i64,
}

/// The session making a change to `user`, if it is theirs: an admin resetting their own
/// password or unlinking their own Microsoft account stays signed in here.
fn own_session(
    ctx: &TenantCtx,
    user: &User,
    session: &Session,
) -> Option<tower_sessions::session::Id> {
    session.id().filter(|_| user.id == ctx.user.id)
}

/// Ends every session of the user (a stolen one included) once their password is reset.
pub async fn reset_password(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    session: Session,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<ResetPasswordForm>,
) -> Result<Response, AppError> {
    let user = users::get(&state.db, &ctx.tenant.id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let password = match NewPassword::parse(form.password.unwrap_or_else(|| SecretString::from("")))
    {
        Ok(password) => password,
        Err(message) => {
            return rejected(&state, &ctx, &id, form.version, "password", message).await;
        }
    };
    let hash = state.passwords.hash(password.into_secret()).await?;
    match users::reset_password_hash(&state.db, &ctx.tenant.id, &user.id, form.version, &hash).await
    {
        Err(ChangeUserError::Stale) => {
            let page = changed_meanwhile_page(&state, &ctx, &id).await?;
            return Ok(Conflict(page).into_response());
        }
        result => result?,
    }
    let keep = own_session(&ctx, &user, &session);
    let ended = accounts::end_sessions(&state, &ctx.tenant, &user.id, keep.as_ref()).await?;
    ctx.audit(
        &state,
        AuditAction::UserPasswordReset,
        &user.email,
        &ended,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/users/{id}?done=password"))).into_response())
}

/// The page again with a message beside one field; its forms keep the version they had.
async fn rejected(
    state: &AppState,
    ctx: &TenantCtx,
    id: &str,
    version: i64,
    field: &'static str,
    message: String,
) -> Result<Response, AppError> {
    let mut page = user_page(state, ctx, id, FieldErrors::single(field, message), None).await?;
    page.version = version;
    Ok(Rejected(page).into_response())
}

/// The page again after another admin changed the user first: their change shows, and the
/// forms carry the new version.
async fn changed_meanwhile_page(
    state: &AppState,
    ctx: &TenantCtx,
    id: &str,
) -> Result<UserPage, AppError> {
    user_page(state, ctx, id, changed_meanwhile("this user"), None).await
}

/// How long a one-time Microsoft link stays valid.
const LINK_VALIDITY: time::Duration = time::Duration::days(7);

/// Makes a one-time link that binds the Microsoft account the user signs in with to them.
pub async fn create_microsoft_link(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<UserPage, AppError> {
    let user = users::get(&state.db, &ctx.tenant.id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let token = random_token();
    let expires_at = (state.clock.now() + LINK_VALIDITY).unix_timestamp();
    identities::create_invite(&state.db, &ctx.tenant.id, &user.id, &token, expires_at).await?;
    ctx.audit(
        &state,
        AuditAction::MicrosoftLinkCreated,
        &user.email,
        "valid for 7 days",
        ip,
    )
    .await?;
    let mut page = user_page(&state, &ctx, &id, FieldErrors::new(), None).await?;
    page.link_url = Some(state.config.public_url(&format!(
        "/t/{}/auth/microsoft/link/{token}",
        ctx.tenant.slug
    )));
    Ok(page)
}

/// Unlinks the user's Microsoft account and ends every session of theirs, so one signed in
/// with that account stops working now.
pub async fn unlink_microsoft(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    session: Session,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<Redirect, AppError> {
    let user = users::get(&state.db, &ctx.tenant.id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    if identities::unlink(&state.db, &ctx.tenant.id, &user.id).await? {
        let keep = own_session(&ctx, &user, &session);
        let ended = accounts::end_sessions(&state, &ctx.tenant, &user.id, keep.as_ref()).await?;
        ctx.audit(
            &state,
            AuditAction::MicrosoftIdentityUnlinked,
            &user.email,
            &ended,
            ip,
        )
        .await?;
    }
    Ok(Redirect::to(
        &ctx.path(&format!("/users/{id}?done=unlinked")),
    ))
}
