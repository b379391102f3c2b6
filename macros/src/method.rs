//! One method of an interface declaration, taken apart.

use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{Attribute, FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Type};

/// A parameter: its name, type, and the `#[serde]` attributes for its field.
pub(crate) struct Param {
    pub name: Ident,
    pub ty: Type,
    pub serde: Vec<Attribute>,
}

/// One method.
pub(crate) struct Method {
    pub name: Ident,
    /// The `Context` parameter's type (plugin interfaces only).
    pub ctx: Option<Tokens>,
    pub params: Vec<Param>,
    pub ok: Type,
    pub err: Type,
    /// Its doc comments and other attributes, for the trait and the client.
    pub attrs: Vec<Attribute>,
    /// `#[wire = "..."]`: its name on the wire (host API only).
    pub wire: Option<String>,
    /// `#[raw]`: its result is another party's document, passed through as
    /// bytes to the client (implies `routed`).
    pub raw: bool,
    /// `#[routed]`: the host serves it apart (it waits: for another plugin,
    /// for a commit), so it is not a method of the trait the host serves
    /// inline; the client calls it like any other.
    pub routed: bool,
}

impl Method {
    pub(crate) fn parse(f: &syn::TraitItemFn, host_api: bool) -> syn::Result<Method> {
        let sig = &f.sig;
        if host_api && sig.asyncness.is_some() {
            return Err(syn::Error::new_spanned(
                sig,
                "the host API's methods are plain `fn`s: the host serves them inline",
            ));
        }
        if !host_api && sig.asyncness.is_none() {
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
        let (wire, raw, routed, attrs) = own_attributes(&f.attrs)?;
        if host_api && wire.is_none() {
            return Err(syn::Error::new_spanned(
                sig,
                "a host API method names its wire name: `#[wire = \"kv.get\"]`",
            ));
        }
        if !host_api && (wire.is_some() || raw || routed) {
            return Err(syn::Error::new_spanned(
                sig,
                "`#[wire]`, `#[raw]` and `#[routed]` are for the host API; an interface's wire names are `<interface>.<method>`",
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
        let ctx = if host_api {
            None
        } else {
            match inputs.next() {
                Some(FnArg::Typed(t)) => {
                    let ty = &t.ty;
                    Some(quote!(#ty))
                }
                _ => {
                    return Err(syn::Error::new_spanned(
                        sig,
                        "the second parameter is the call's `Context`",
                    ))
                }
            }
        };
        let mut params = Vec::new();
        for input in inputs {
            params.push(param(input)?);
        }
        let ReturnType::Type(_, ret) = &sig.output else {
            return Err(syn::Error::new_spanned(
                sig,
                "interface methods return `Result<T, E>`",
            ));
        };
        let (ok, err) = result_types(ret).ok_or_else(|| {
            syn::Error::new_spanned(ret, "interface methods return `Result<T, E>`")
        })?;
        Ok(Method {
            name: sig.ident.clone(),
            ctx,
            params,
            ok,
            err,
            attrs,
            wire,
            raw,
            routed: routed || raw,
        })
    }

    /// `name: Type, ...` as the trait and the client's methods take them.
    pub(crate) fn typed_params(&self) -> Vec<Tokens> {
        self.params
            .iter()
            .map(|Param { name, ty, .. }| quote!(#name: #ty))
            .collect()
    }

    /// The fields of the arguments map, with their `#[serde]` attributes.
    pub(crate) fn fields(&self, public: bool) -> Vec<Tokens> {
        self.params
            .iter()
            .map(|Param { name, ty, serde }| {
                if public {
                    let doc = format!("The parameter `{name}` of `{}`.", self.name);
                    quote!(#[doc = #doc] #(#serde)* pub #name: #ty)
                } else {
                    quote!(#(#serde)* #name: #ty)
                }
            })
            .collect()
    }

    /// Its `MethodShape`, as announced, under the name `wire`.
    pub(crate) fn shape(&self, p: &Tokens, wire: &str) -> Tokens {
        let fields = self.params.iter().map(|Param { name, ty, .. }| {
            let n = name.to_string();
            let t = quote!(#ty).to_string();
            quote!(#p::Field { name: #n.to_owned(), ty: #t.to_owned() })
        });
        let (ok, err) = (&self.ok, &self.err);
        let ok = quote!(#ok).to_string();
        let err = quote!(#err).to_string();
        quote! {
            #p::MethodShape {
                name: #wire.to_owned(),
                args: ::std::vec![#(#fields),*],
                result: #ok.to_owned(),
                error: #err.to_owned(),
            }
        }
    }

    /// The parameters' names.
    pub(crate) fn names(&self) -> Vec<&Ident> {
        self.params.iter().map(|p| &p.name).collect()
    }
}

/// Splits `#[wire = "..."]`, `#[raw]` and `#[routed]` from the attributes passed on.
fn own_attributes(
    attrs: &[Attribute],
) -> syn::Result<(Option<String>, bool, bool, Vec<Attribute>)> {
    let mut wire = None;
    let mut raw = false;
    let mut routed = false;
    let mut rest = Vec::new();
    for a in attrs {
        if a.path().is_ident("wire") {
            let nv = a.meta.require_name_value()?;
            match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => wire = Some(s.value()),
                other => return Err(syn::Error::new_spanned(other, "expected a string")),
            }
        } else if a.path().is_ident("raw") {
            a.meta.require_path_only()?;
            raw = true;
        } else if a.path().is_ident("routed") {
            a.meta.require_path_only()?;
            routed = true;
        } else {
            rest.push(a.clone());
        }
    }
    Ok((wire, raw, routed, rest))
}

fn param(input: &FnArg) -> syn::Result<Param> {
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
    let mut serde = Vec::new();
    for a in &t.attrs {
        if a.path().is_ident("serde") {
            serde.push(a.clone());
        } else {
            return Err(syn::Error::new_spanned(
                a,
                "a parameter takes `#[serde(...)]` attributes only",
            ));
        }
    }
    Ok(Param {
        name: id.ident.clone(),
        ty: (*t.ty).clone(),
        serde,
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
