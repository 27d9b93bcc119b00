//! The signed-out page: provider buttons, local accounts and guest sign-in.

use super::{failure, query_error, DisplayNameField, FormError};
use crate::{
    api::{SignInGuest, SignInOptions, SignInPassword, SignUp},
    protocol::MIN_PASSWORD_CHARS,
};
use leptos::prelude::*;

/// The signed-out page: provider buttons, local accounts and guest sign-in,
/// as configured. Every form works without JavaScript: provider buttons post
/// to `/auth/oidc/<id>` (which redirects to the provider), the rest post to
/// server functions (a failure comes back as `?error=`, shown at the top).
#[component]
pub(crate) fn SignIn(
    options: SignInOptions,
    guest: ServerAction<SignInGuest>,
    password: ServerAction<SignInPassword>,
    sign_up: ServerAction<SignUp>,
) -> impl IntoView {
    let from_query = query_error();
    let nothing = options.providers.is_empty() && !options.local && !options.guest;
    view! {
        <main class="signin">
            <h1>"Chat"</h1>
            <FormError error=from_query />
            {(!options.providers.is_empty())
                .then(|| {
                    view! {
                        <section class="providers" aria-label="Sign in with a provider">
                            {options
                                .providers
                                .into_iter()
                                .map(|p| {
                                    view! {
                                        <form method="post" action=format!("/auth/oidc/{}", p.id)>
                                            <button type="submit" class="provider">
                                                {format!("Sign in with {}", p.name)}
                                            </button>
                                        </form>
                                    }
                                })
                                .collect_view()}
                        </section>
                    }
                })}
            {options.local.then(|| view! { <LocalAccount password sign_up /> })}
            {options.guest.then(|| view! { <GuestSignIn action=guest /> })}
            {nothing.then(|| view! { <p>"Sign-in is not configured on this server."</p> })}
        </main>
    }
}

#[component]
fn LocalAccount(
    password: ServerAction<SignInPassword>,
    sign_up: ServerAction<SignUp>,
) -> impl IntoView {
    let sign_in_error = failure(password);
    let sign_up_error = failure(sign_up);
    view! {
        <section class="local" aria-label="Email and password">
            <h2>"Sign in with email"</h2>
            <ActionForm action=password attr:class="signin-password">
                <label for="signin-email">"Email"</label>
                <input id="signin-email" name="email" type="email" autocomplete="username" />
                <label for="signin-password">"Password"</label>
                <input
                    id="signin-password"
                    name="password"
                    type="password"
                    autocomplete="current-password"
                />
                <button type="submit">"Sign in"</button>
                <FormError error=sign_in_error />
            </ActionForm>
            <details class="signup">
                <summary>"New here? Create an account"</summary>
                <ActionForm action=sign_up attr:class="signup-form">
                    <DisplayNameField id="signup-name" />
                    <label for="signup-email">"Email"</label>
                    <input id="signup-email" name="email" type="email" autocomplete="email" />
                    <label for="signup-password">"Password"</label>
                    <input
                        id="signup-password"
                        name="password"
                        type="password"
                        autocomplete="new-password"
                        placeholder=format!("at least {MIN_PASSWORD_CHARS} characters")
                    />
                    <button type="submit">"Create account"</button>
                    <FormError error=sign_up_error />
                </ActionForm>
            </details>
        </section>
    }
}

#[component]
fn GuestSignIn(action: ServerAction<SignInGuest>) -> impl IntoView {
    let error = failure(action);
    view! {
        <section class="guest" aria-label="Guest">
            <ActionForm action>
                <DisplayNameField id="display-name" />
                <button type="submit">"Sign in as guest"</button>
                <FormError error=error />
            </ActionForm>
        </section>
    }
}
