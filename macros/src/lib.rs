//! `#[iglu_sdk::interface(name = "...", version = "...")]` on a trait of
//! async methods makes it an Iglu interface: the trait for implementers, a
//! descriptor (`<Trait>Interface`: its id, its announcement, and `server`
//! to hand an implementation to `Plugin::implement`), and a typed client
//! (`<Trait>Client<C>`) that calls any plugin implementing it through a
//! `Caller` (the embedding host, or a plugin's host client).
//!
//! Each method is `async fn name(&self, ctx: Context, a: A, ...) -> Result<R, E>`
//! with serde types; the wire shape is described in `iglu_bus::interface`.
//! A parameter may carry `#[serde(...)]` attributes (for example
//! `#[serde(default)]` for an argument added in a minor version); they go
//! on the field of the arguments map.
//!
//! With `host_api`, the same declaration describes the host's own API
//! (`iglu_bus::host_api`): methods are plain `fn`s the host serves inline,
//! each named on the wire by `#[wire = "kv.get"]`, answered with the result
//! itself or an ERROR (no `{ok}`/`{err}`); the descriptor gets `serve`
//! (dispatch by wire name) and the client calls through a `HostCaller`.
//! A `#[routed]` method is one the host serves apart because it waits (for
//! a commit, for another plugin); `#[raw]` (routed too) hands the client
//! the result's bytes as they came.
//! `runtime = "path"` names where the run-time support lives when it is not
//! `::iglu_sdk::interface` (the bus crate declares the host API itself).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{ItemTrait, LitStr, Token};

mod host;
mod method;
mod plugin;

/// What the attribute says.
struct Args {
    name: LitStr,
    version: LitStr,
    host_api: bool,
    runtime: Option<syn::Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut name = None;
        let mut version = None;
        let mut host_api = false;
        let mut runtime = None;
        for meta in Punctuated::<syn::Meta, Token![,]>::parse_terminated(input)? {
            match meta {
                syn::Meta::Path(p) if p.is_ident("host_api") => host_api = true,
                syn::Meta::NameValue(pair) => {
                    let value = match &pair.value {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s),
                            ..
                        }) => s.clone(),
                        other => return Err(syn::Error::new_spanned(other, "expected a string")),
                    };
                    if pair.path.is_ident("name") {
                        name = Some(value);
                    } else if pair.path.is_ident("version") {
                        version = Some(value);
                    } else if pair.path.is_ident("runtime") {
                        runtime = Some(value.parse()?);
                    } else {
                        return Err(syn::Error::new_spanned(
                            pair.path,
                            "expected `name`, `version`, `runtime` or `host_api`",
                        ));
                    }
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "expected `name = \"...\"`, `version = \"...\"`, `runtime = \"...\"` or `host_api`",
                    ))
                }
            }
        }
        let span = input.span();
        Ok(Args {
            name: name.ok_or_else(|| syn::Error::new(span, "missing `name = \"...\"`"))?,
            version: version
                .ok_or_else(|| syn::Error::new(span, "missing `version = \"x.y.z\"`"))?,
            host_api,
            runtime,
        })
    }
}

/// Declares an Iglu interface; see the crate documentation.
#[proc_macro_attribute]
pub fn interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(attr as Args);
    let item = syn::parse_macro_input!(item as ItemTrait);
    match expand(args, item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(args: Args, item: ItemTrait) -> syn::Result<Tokens> {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "an interface takes no generics",
        ));
    }
    if !item.supertraits.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.supertraits,
            "an interface has no supertraits (it is Send + Sync + 'static already)",
        ));
    }
    let mut methods = Vec::new();
    for entry in &item.items {
        match entry {
            syn::TraitItem::Fn(f) => methods.push(method::Method::parse(f, args.host_api)?),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "an interface holds methods only",
                ))
            }
        }
    }
    if args.host_api {
        host::expand(&args, &item, &methods)
    } else {
        plugin::expand(&args, &item, &methods)
    }
}
