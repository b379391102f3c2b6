//! `#[iglu_sdk::interface(name = "...", version = "...")]` on a trait of
//! async methods makes it an Iglu interface: the trait for implementers, a
//! descriptor (`<Trait>Interface`: its id, its announcement, and `server`
//! to hand an implementation to `Plugin::implement`), and a typed client
//! (`<Trait>Client<C>`) that calls any plugin implementing it through a
//! `Caller` (the embedding host, or a plugin's host client).
//!
//! Each method is `async fn name(&self, ctx: Context, a: A, ...) -> Result<R, E>`
//! with serde types; the wire shape is described in `iglu_bus::interface`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, PathArguments, ReturnType, Token,
    TraitItem, Type,
};

struct Args {
    name: LitStr,
    version: LitStr,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut name = None;
        let mut version = None;
        let pairs = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated(input)?;
        for pair in pairs {
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
            } else {
                return Err(syn::Error::new_spanned(
                    pair.path,
                    "expected `name` or `version`",
                ));
            }
        }
        let span = input.span();
        Ok(Args {
            name: name.ok_or_else(|| syn::Error::new(span, "missing `name = \"...\"`"))?,
            version: version
                .ok_or_else(|| syn::Error::new(span, "missing `version = \"x.y.z\"`"))?,
        })
    }
}

/// One method, taken apart.
struct Method {
    name: Ident,
    ctx: Tokens,
    params: Vec<(Ident, Type)>,
    ok: Type,
    err: Type,
    attrs: Vec<syn::Attribute>,
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

fn method(f: &syn::TraitItemFn) -> syn::Result<Method> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig,
            "interface methods are `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "interface methods take no generics: their types cross the wire as they are",
        ));
    }
    if sig.ident == "new" || sig.ident == "with_deadline" {
        return Err(syn::Error::new_spanned(
            &sig.ident,
            "`new` and `with_deadline` are the typed client's own; name the method otherwise",
        ));
    }
    if let Some(cfg) = f.attrs.iter().find(|a| a.path().is_ident("cfg")) {
        return Err(syn::Error::new_spanned(
            cfg,
            "an interface is the same everywhere: `#[cfg]` on its methods is not supported",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => {
            return Err(syn::Error::new_spanned(
                sig,
                "the first parameter is `&self`",
            ))
        }
    }
    let ctx = match inputs.next() {
        Some(FnArg::Typed(t)) => {
            let ty = &t.ty;
            quote!(#ty)
        }
        _ => {
            return Err(syn::Error::new_spanned(
                sig,
                "the second parameter is the call's `Context`",
            ))
        }
    };
    let mut params = Vec::new();
    for input in inputs {
        let FnArg::Typed(t) = input else {
            return Err(syn::Error::new_spanned(input, "unexpected receiver"));
        };
        let Pat::Ident(id) = &*t.pat else {
            return Err(syn::Error::new_spanned(
                &t.pat,
                "parameters are plain names",
            ));
        };
        if let Type::Reference(r) = &*t.ty {
            return Err(syn::Error::new_spanned(
                r,
                "interface parameters are owned serde types (`String`, not `&str`)",
            ));
        }
        params.push((id.ident.clone(), (*t.ty).clone()));
    }
    let ReturnType::Type(_, ret) = &sig.output else {
        return Err(syn::Error::new_spanned(
            sig,
            "interface methods return `Result<T, E>`",
        ));
    };
    let (ok, err) = result_types(ret)
        .ok_or_else(|| syn::Error::new_spanned(ret, "interface methods return `Result<T, E>`"))?;
    Ok(Method {
        name: sig.ident.clone(),
        ctx,
        params,
        ok,
        err,
        attrs: f.attrs.clone(),
    })
}

fn result_types(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    Some((types.next()?, types.next()?))
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
    let vis = &item.vis;
    let trait_name = &item.ident;
    let trait_attrs = &item.attrs;
    let descriptor = format_ident!("{}Interface", trait_name);
    let client = format_ident!("{}Client", trait_name);
    let (iface_name, iface_version) = (&args.name, &args.version);
    let mut methods = Vec::new();
    for entry in &item.items {
        match entry {
            TraitItem::Fn(f) => methods.push(method(f)?),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "an interface holds async methods only",
                ))
            }
        }
    }
    let p = quote!(::iglu_sdk::interface);
    let serde_crate = "::iglu_sdk::interface::__private::serde";

    let trait_methods = methods.iter().map(|m| {
        let Method {
            name,
            ctx,
            params,
            ok,
            err,
            attrs,
        } = m;
        let ps = params.iter().map(|(n, t)| quote!(#n: #t));
        quote! {
            #(#attrs)*
            fn #name(&self, ctx: #ctx, #(#ps),*)
                -> impl ::core::future::Future<Output = ::core::result::Result<#ok, #err>> + ::core::marker::Send;
        }
    });

    let shapes = methods.iter().map(|m| {
        let name = m.name.to_string();
        let fields = m.params.iter().map(|(n, t)| {
            let n = n.to_string();
            let t = quote!(#t).to_string();
            quote!(#p::Field { name: #n.to_owned(), ty: #t.to_owned() })
        });
        let (ok, err) = (&m.ok, &m.err);
        let ok = quote!(#ok).to_string();
        let err = quote!(#err).to_string();
        quote! {
            #p::MethodShape {
                name: #name.to_owned(),
                args: ::std::vec![#(#fields),*],
                result: #ok.to_owned(),
                error: #err.to_owned(),
            }
        }
    });

    let handlers = methods.iter().map(|m| {
        let name = &m.name;
        let wire = name.to_string();
        let (ok, err) = (&m.ok, &m.err);
        let fields = m.params.iter().map(|(n, t)| quote!(#n: #t));
        let names: Vec<&Ident> = m.params.iter().map(|(n, _)| n).collect();
        quote! {
            {
                #[derive(#p::__private::serde::Deserialize)]
                #[serde(crate = #serde_crate)]
                struct __IgluArgs { #(#fields),* }
                let __iglu_imp = __iglu_imp.clone();
                __iglu_handlers.push((
                    #p::method_name(#iface_name, #wire),
                    ::iglu_sdk::handler::erase(move |__iglu_ctx: ::iglu_sdk::Context, __iglu_args: __IgluArgs| {
                        let __iglu_imp = __iglu_imp.clone();
                        async move {
                            let __IgluArgs { #(#names),* } = __iglu_args;
                            ::core::result::Result::<_, ::iglu_sdk::HandlerError>::Ok(
                                match __iglu_imp.#name(__iglu_ctx, #(#names),*).await {
                                    ::core::result::Result::Ok(r) => #p::Answer::<#ok, #err>::Ok(r),
                                    ::core::result::Result::Err(e) => #p::Answer::<#ok, #err>::Err(e),
                                },
                            )
                        }
                    }),
                ));
            }
        }
    });

    let client_methods = methods.iter().map(|m| {
        let name = &m.name;
        let wire = name.to_string();
        let (ok, err) = (&m.ok, &m.err);
        let fields = m.params.iter().map(|(n, t)| quote!(#n: #t));
        let ps = m.params.iter().map(|(n, t)| quote!(#n: #t));
        let names: Vec<&Ident> = m.params.iter().map(|(n, _)| n).collect();
        let attrs = &m.attrs;
        quote! {
            #(#attrs)*
            pub async fn #name(&self, #(#ps),*) -> ::core::result::Result<#ok, #p::InterfaceError<#err>> {
                #[derive(#p::__private::serde::Serialize)]
                #[serde(crate = #serde_crate)]
                struct __IgluArgs { #(#fields),* }
                let args = #p::__private::rmp_serde::to_vec_named(&__IgluArgs { #(#names),* })
                    .map_err(|e| #p::InterfaceError::Codec(e.to_string()))?;
                #p::decode_answer(
                    self.caller
                        .call_interface(&self.plugin, &#descriptor::ID, #wire, args, self.deadline)
                        .await,
                )
            }
        }
    });

    let doc_client = format!(
        "A typed client of `{}` {} on one plugin, through any `Caller`.",
        iface_name.value(),
        iface_version.value()
    );
    let doc_descriptor = format!(
        "The interface `{}` {}: its id, its announcement, and `server`.",
        iface_name.value(),
        iface_version.value()
    );
    Ok(quote! {
        #(#trait_attrs)*
        #vis trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#trait_methods)*
        }

        #[doc = #doc_descriptor]
        #vis struct #descriptor;

        impl #descriptor {
            /// Its name and version.
            pub const ID: #p::InterfaceId = #p::InterfaceId { name: #iface_name, version: #iface_version };

            /// What a plugin implementing it announces in HELLO.
            pub fn info() -> #p::InterfaceInfo {
                #p::InterfaceInfo {
                    name: #iface_name.to_owned(),
                    version: #iface_version.to_owned(),
                    methods: ::std::vec![#(#shapes),*],
                }
            }

            /// `imp`'s methods as handlers, for `Plugin::implement`.
            pub fn server<__IgluImpl: #trait_name>(imp: __IgluImpl) -> #p::Server {
                let __iglu_imp = ::std::sync::Arc::new(imp);
                let mut __iglu_handlers = ::std::vec::Vec::new();
                #(#handlers)*
                #p::Server { info: Self::info(), handlers: __iglu_handlers }
            }
        }

        #[doc = #doc_client]
        #vis struct #client<__IgluCaller> {
            caller: __IgluCaller,
            plugin: ::std::string::String,
            deadline: ::std::time::Duration,
        }

        impl<__IgluCaller: #p::Caller> #client<__IgluCaller> {
            /// A client of plugin `plugin`, with a 10 s deadline per call.
            pub fn new(caller: __IgluCaller, plugin: impl ::core::convert::Into<::std::string::String>) -> Self {
                #client { caller, plugin: plugin.into(), deadline: ::std::time::Duration::from_secs(10) }
            }

            /// The same client with another deadline per call.
            pub fn with_deadline(mut self, deadline: ::std::time::Duration) -> Self {
                self.deadline = deadline;
                self
            }

            #(#client_methods)*
        }
    })
}
