//! The host API's declaration: a trait the host implements with plain
//! methods, a descriptor that dispatches a call by its wire name, public
//! argument maps (so the host's router can read one before dispatch), and
//! the typed client a plugin's SDK calls the host with.

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
    let args_mod = format_ident!("{}_args", snake(&trait_name.to_string()));
    let (iface_name, iface_version) = (&args.name, &args.version);
    let p = match &args.runtime {
        Some(path) => quote!(#path),
        None => quote!(::iglu_sdk::interface),
    };
    let serde_crate = format!("{}::__private::serde", p.to_string().replace(' ', ""));
    let wire = |m: &Method| m.wire.clone().unwrap_or_default();
    let struct_of = |m: &Method| format_ident!("{}", camel(&m.name.to_string()));
    let const_of = |m: &Method| format_ident!("{}", m.name.to_string().to_uppercase());

    let trait_methods = methods.iter().filter(|m| !m.routed).map(|m| {
        let Method {
            name,
            ok,
            err,
            attrs,
            ..
        } = m;
        let ps = m.typed_params();
        quote! {
            #(#attrs)*
            fn #name(&self, #(#ps),*) -> ::core::result::Result<#ok, #err>;
        }
    });

    let arg_structs = methods.iter().map(|m| {
        let s = struct_of(m);
        let fields = m.fields(true);
        let doc = format!("The arguments of `{}`.", wire(m));
        quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, #p::__private::serde::Serialize, #p::__private::serde::Deserialize)]
            #[serde(crate = #serde_crate)]
            pub struct #s { #(#fields),* }
        }
    });

    let consts = methods.iter().map(|m| {
        let c = const_of(m);
        let w = wire(m);
        let doc = format!("`{w}`.");
        quote!(#[doc = #doc] pub const #c: &'static str = #w;)
    });
    let all: Vec<String> = methods.iter().map(wire).collect();
    let shapes = methods.iter().map(|m| m.shape(&p, &wire(m)));

    let arms = methods.iter().filter(|m| !m.routed).map(|m| {
        let (name, c, s) = (&m.name, const_of(m), struct_of(m));
        let names = m.names();
        quote! {
            Self::#c => ::core::option::Option::Some((|| {
                let #args_mod::#s { #(#names),* } = #p::decode_args(args)?;
                let result = imp.#name(#(#names),*).map_err(::core::convert::Into::<#p::WireError>::into)?;
                #p::encode_result(&result)
            })()),
        }
    });

    let client_methods = methods.iter().map(|m| {
        let Method {
            name, ok, attrs, ..
        } = m;
        let (c, s) = (const_of(m), struct_of(m));
        let ps = m.typed_params();
        let names = m.names();
        let call = quote! {
            let args = #p::__private::rmp_serde::to_vec_named(&#args_mod::#s { #(#names),* })
                .map_err(|e| self.caller.codec_error(e.to_string()))?;
            let bytes = self.caller.call_host(#descriptor::#c, args, self.deadline).await?;
        };
        if m.raw {
            quote! {
                #(#attrs)*
                pub async fn #name(&self, #(#ps),*) -> ::core::result::Result<#p::__private::bytes::Bytes, __IgluCaller::Error> {
                    #call
                    ::core::result::Result::Ok(bytes)
                }
            }
        } else {
            quote! {
                #(#attrs)*
                pub async fn #name(&self, #(#ps),*) -> ::core::result::Result<#ok, __IgluCaller::Error> {
                    #call
                    #p::__private::rmp_serde::from_slice(&bytes)
                        .map_err(|e| self.caller.codec_error(e.to_string()))
                }
            }
        }
    });

    let doc_args = format!(
        "The argument maps of `{}`'s methods, one struct each.",
        iface_name.value()
    );
    let doc_descriptor = format!(
        "`{}` {}: its id, method names, announcement, and `serve`.",
        iface_name.value(),
        iface_version.value()
    );
    let doc_client = format!(
        "A typed client of `{}` {}, through a `HostCaller`.",
        iface_name.value(),
        iface_version.value()
    );
    Ok(quote! {
        #(#trait_attrs)*
        #vis trait #trait_name {
            #(#trait_methods)*
        }

        #[doc = #doc_args]
        #vis mod #args_mod {
            #[allow(unused_imports)]
            use super::*;
            #(#arg_structs)*
        }

        #[doc = #doc_descriptor]
        #vis struct #descriptor;

        impl #descriptor {
            /// Its name and version.
            pub const ID: #p::InterfaceId = #p::InterfaceId { name: #iface_name, version: #iface_version };
            /// Every method's wire name.
            pub const METHODS: &'static [&'static str] = &[#(#all),*];
            #(#consts)*

            /// The announcement: methods and their shapes.
            pub fn info() -> #p::InterfaceInfo {
                #p::InterfaceInfo {
                    name: #iface_name.to_owned(),
                    version: #iface_version.to_owned(),
                    methods: ::std::vec![#(#shapes),*],
                }
            }

            /// Serves the call of `method` with `args` on `imp`: `None` if no
            /// method of the trait has that name (a `#[routed]` one is
            /// served apart, before this).
            pub fn serve<__IgluImpl: #trait_name + ?Sized>(
                imp: &__IgluImpl,
                method: &str,
                args: &[u8],
            ) -> ::core::option::Option<::core::result::Result<#p::__private::bytes::Bytes, #p::WireError>> {
                match method {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                }
            }
        }

        #[doc = #doc_client]
        #[derive(Debug, Clone)]
        #vis struct #client<__IgluCaller> {
            caller: __IgluCaller,
            deadline: ::core::option::Option<::std::time::Duration>,
        }

        impl<__IgluCaller: #p::HostCaller> #client<__IgluCaller> {
            /// A client with the caller's own deadline per call.
            pub fn new(caller: __IgluCaller) -> Self {
                #client { caller, deadline: ::core::option::Option::None }
            }

            /// The same client with this deadline per call.
            pub fn with_deadline(mut self, deadline: ::std::time::Duration) -> Self {
                self.deadline = ::core::option::Option::Some(deadline);
                self
            }

            #(#client_methods)*
        }
    })
}

/// `HostApi` -> `host_api`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// `kv_get` -> `KvGet`.
fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
