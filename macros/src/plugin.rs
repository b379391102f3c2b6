//! A plugin's interface: the trait, its descriptor and server, and the
//! typed client that calls it through any `Caller`.

use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::ItemTrait;

use crate::method::Method;
use crate::Args;

pub(crate) fn expand(args: &Args, item: &ItemTrait, methods: &[Method]) -> syn::Result<Tokens> {
    let vis = &item.vis;
    let trait_name = &item.ident;
    let trait_attrs = &item.attrs;
    let descriptor = format_ident!("{}Interface", trait_name);
    let client = format_ident!("{}Client", trait_name);
    let (iface_name, iface_version) = (&args.name, &args.version);
    let p = match &args.runtime {
        Some(path) => quote!(#path),
        None => quote!(::iglu_sdk::interface),
    };
    let serde_crate = format!("{}::__private::serde", p.to_string().replace(' ', ""));

    let trait_methods = methods.iter().map(|m| {
        let Method {
            name,
            ctx,
            ok,
            err,
            attrs,
            ..
        } = m;
        let ps = m.typed_params();
        quote! {
            #(#attrs)*
            fn #name(&self, ctx: #ctx, #(#ps),*)
                -> impl ::core::future::Future<Output = ::core::result::Result<#ok, #err>> + ::core::marker::Send;
        }
    });

    let shared_methods = methods.iter().map(|m| {
        let Method {
            name,
            ctx,
            ok,
            err,
            ..
        } = m;
        let ps = m.typed_params();
        let names = m.names();
        quote! {
            fn #name(&self, ctx: #ctx, #(#ps),*)
                -> impl ::core::future::Future<Output = ::core::result::Result<#ok, #err>> + ::core::marker::Send {
                (**self).#name(ctx, #(#names),*)
            }
        }
    });

    let shapes = methods.iter().map(|m| m.shape(&p, &m.name.to_string()));

    let handlers = methods.iter().map(|m| {
        let name = &m.name;
        let wire = name.to_string();
        let (ok, err) = (&m.ok, &m.err);
        let fields = m.fields(false);
        let names = m.names();
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
        let fields = m.fields(false);
        let ps = m.typed_params();
        let names = m.names();
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

        /// A shared implementation is one too (one value behind the server
        /// and the plugin's other handlers).
        impl<__IgluShared: #trait_name> #trait_name for ::std::sync::Arc<__IgluShared> {
            #(#shared_methods)*
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
