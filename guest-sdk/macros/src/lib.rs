//! The `#[app]` attribute macro behind `modal-guest`; use it through that
//! crate, whose documentation describes the syntax.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, Ident, Item, ItemFn, ItemMod, Lit, Meta, Pat, ReturnType,
    Token, Type,
};

/// Turns a module of `#[function]`s into a modal app: generates the
/// component's `describe`, `call` dispatch, lifecycle hooks and, when there
/// are web functions, the `wasi:http` handler.
#[proc_macro_attribute]
pub fn app(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = TokenStream2::from(attr);
    if !attr.is_empty() {
        return syn::Error::new(attr.span(), "`#[app]` takes no arguments")
            .to_compile_error()
            .into();
    }
    let module = syn::parse_macro_input!(item as ItemMod);
    match expand(module) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// What kind of function, as declared in `#[function(...)]`.
enum Kind {
    Plain,
    Web {
        method: Option<String>,
    },
    Cron {
        expression: String,
        timezone: Option<String>,
    },
    PeriodMs(u64),
}

/// One `#[function]` and its settings.
struct Function {
    ident: Ident,
    kind: Kind,
    description: Option<String>,
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    min_warm: Option<u32>,
    max_instances: Option<u32>,
    max_requests: Option<u32>,
    /// The secrets it uses (`secrets = ["openai"]`).
    secrets: Vec<String>,
    params: Vec<(Ident, Type)>,
    /// `async fn`: run on the SDK's async runtime.
    is_async: bool,
    returns_result: bool,
    /// Where a compile error about the return type points: the return
    /// type, or the name of a function without one.
    output_span: proc_macro2::Span,
    /// What a caller gets back: the return type, the `T` of a
    /// `Result<T, E>`, `()` without one; `None` when it cannot be named
    /// (`impl Trait`), which leaves the function without stubs.
    output: Option<Type>,
    signature: String,
}

fn expand(mut module: ItemMod) -> syn::Result<TokenStream2> {
    let Some((_, items)) = module.content.as_mut() else {
        return Err(syn::Error::new(
            module.span(),
            "`#[app]` needs an inline module: `mod app { ... }`",
        ));
    };
    let mut functions = Vec::new();
    let mut enter = None;
    let mut exit = None;
    for item in items.iter_mut() {
        let Item::Fn(f) = item else { continue };
        if let Some(attr) = take_attr(f, "function") {
            functions.push(parse_function(f, &attr)?);
        } else if let Some(attr) = take_attr(f, "enter") {
            check_hook(f, &attr, "enter", &mut enter)?;
        } else if let Some(attr) = take_attr(f, "exit") {
            check_hook(f, &attr, "exit", &mut exit)?;
        }
    }
    if functions.is_empty() {
        return Err(syn::Error::new(
            module.ident.span(),
            "this app has no functions: mark at least one with `#[function]`",
        ));
    }
    let mut names = std::collections::HashSet::new();
    for f in &functions {
        if !names.insert(f.ident.to_string()) {
            return Err(syn::Error::new(f.ident.span(), "duplicate function name"));
        }
    }
    let glue = glue(&functions, enter.as_ref(), exit.as_ref());
    items.push(syn::parse2(glue)?);
    for f in functions
        .iter()
        .filter(|f| !matches!(f.kind, Kind::Web { .. }))
    {
        if let Some(module) = stubs(f) {
            items.push(syn::parse2(module)?);
        }
    }
    Ok(module.into_token_stream())
}

/// Removes the attribute named `name` from `f` and returns it.
fn take_attr(f: &mut ItemFn, name: &str) -> Option<Attribute> {
    let pos = f.attrs.iter().position(|a| a.path().is_ident(name))?;
    Some(f.attrs.remove(pos))
}

fn check_hook(
    f: &ItemFn,
    attr: &Attribute,
    what: &str,
    slot: &mut Option<Ident>,
) -> syn::Result<()> {
    if !matches!(attr.meta, Meta::Path(_)) {
        return Err(syn::Error::new(
            attr.span(),
            format!("`#[{what}]` takes no arguments"),
        ));
    }
    if !f.sig.inputs.is_empty() || f.sig.asyncness.is_some() || !f.sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            f.sig.span(),
            format!("an `#[{what}]` hook is a plain `fn` without parameters"),
        ));
    }
    if slot.is_some() {
        return Err(syn::Error::new(
            f.sig.ident.span(),
            format!("only one `#[{what}]` hook is allowed"),
        ));
    }
    *slot = Some(f.sig.ident.clone());
    Ok(())
}

fn parse_function(f: &ItemFn, attr: &Attribute) -> syn::Result<Function> {
    let sig = &f.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "modal functions cannot be generic",
        ));
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(r.span(), "modal functions take no `self`"));
            }
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) => {
                    if let Some(borrowed) = borrowed_type(&pt.ty) {
                        let owned = match type_text(&borrowed).as_str() {
                            "str" => "String".to_string(),
                            "[u8]" => "Vec<u8>".to_string(),
                            other => other
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_string(),
                        };
                        return Err(syn::Error::new(
                            pt.ty.span(),
                            format!(
                                "parameter `{}` borrows (`{}`); a modal function's arguments are decoded \
                                 from JSON into owned values: take `{owned}` instead",
                                pi.ident,
                                type_text(&pt.ty)
                            ),
                        ));
                    }
                    params.push((pi.ident.clone(), (*pt.ty).clone()))
                }
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "name each parameter with a plain identifier",
                    ));
                }
            },
        }
    }
    let mut function = Function {
        ident: sig.ident.clone(),
        kind: Kind::Plain,
        description: doc_line(&f.attrs),
        timeout_ms: None,
        retries: None,
        min_warm: None,
        max_instances: None,
        max_requests: None,
        secrets: Vec::new(),
        is_async: sig.asyncness.is_some(),
        returns_result: returns_result(&sig.output),
        output_span: match &sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => sig.ident.span(),
        },
        output: output_type(&sig.output),
        signature: signature(sig, &params),
        params,
    };
    if let Meta::List(list) = &attr.meta {
        let settings = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
        for setting in settings {
            apply_setting(&mut function, &setting)?;
        }
    } else if !matches!(attr.meta, Meta::Path(_)) {
        return Err(syn::Error::new(
            attr.span(),
            "write `#[function]` or `#[function(...)]`",
        ));
    }
    if let Kind::Web { .. } = function.kind
        && function.params.len() > 1
    {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "a web function takes one `modal_guest::Request` parameter, or none",
        ));
    }
    Ok(function)
}

fn apply_setting(f: &mut Function, setting: &Meta) -> syn::Result<()> {
    let name = setting
        .path()
        .get_ident()
        .map(Ident::to_string)
        .unwrap_or_default();
    match (name.as_str(), setting) {
        ("web", Meta::Path(_)) => set_kind(f, setting, Kind::Web { method: None }),
        ("web", Meta::List(list)) => {
            let mut method = None;
            let inner = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
            for m in inner {
                match &m {
                    Meta::NameValue(nv) if nv.path.is_ident("method") => {
                        let value = lit_str(&nv.value)?;
                        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphabetic()) {
                            return Err(syn::Error::new(
                                nv.value.span(),
                                "expected an HTTP method such as \"GET\"",
                            ));
                        }
                        method = Some(value.to_ascii_uppercase());
                    }
                    _ => return Err(syn::Error::new(m.span(), "expected `method = \"GET\"`")),
                }
            }
            set_kind(f, setting, Kind::Web { method })
        }
        ("schedule", Meta::NameValue(nv)) => {
            let kind = parse_schedule(&nv.value)?;
            set_kind(f, setting, kind)
        }
        ("timeout", Meta::NameValue(nv)) => {
            f.timeout_ms = Some(duration_ms(&nv.value)?);
            Ok(())
        }
        ("retries", Meta::NameValue(nv)) => {
            f.retries = Some(lit_u32(&nv.value)?);
            Ok(())
        }
        ("min_warm", Meta::NameValue(nv)) => {
            f.min_warm = Some(lit_u32(&nv.value)?);
            Ok(())
        }
        ("max_instances", Meta::NameValue(nv)) => {
            f.max_instances = Some(lit_u32(&nv.value)?);
            Ok(())
        }
        ("max_requests", Meta::NameValue(nv)) => {
            f.max_requests = Some(lit_u32(&nv.value)?);
            Ok(())
        }
        ("secrets", Meta::NameValue(nv)) => {
            let Expr::Array(list) = &nv.value else {
                return Err(syn::Error::new(
                    nv.value.span(),
                    "expected a list of secret names: `secrets = [\"openai\"]`",
                ));
            };
            for name in &list.elems {
                f.secrets.push(lit_str(name)?);
            }
            Ok(())
        }
        _ => Err(syn::Error::new(
            setting.span(),
            "unknown setting; expected `web`, `web(method = \"GET\")`, `schedule = cron(\"...\")`, \
             `schedule = period(\"30s\")`, `timeout = \"2s\"`, `retries = N`, `min_warm = N`, \
             `max_instances = N`, `max_requests = N` or `secrets = [\"name\"]`",
        )),
    }
}

fn set_kind(f: &mut Function, at: &Meta, kind: Kind) -> syn::Result<()> {
    if !matches!(f.kind, Kind::Plain) {
        return Err(syn::Error::new(
            at.span(),
            "a function is either web or scheduled, not both",
        ));
    }
    f.kind = kind;
    Ok(())
}

fn parse_schedule(expr: &Expr) -> syn::Result<Kind> {
    let err = || {
        syn::Error::new(
            expr.span(),
            "expected `cron(\"sec min hour day month weekday\")` or `period(\"30s\")`",
        )
    };
    let Expr::Call(call) = expr else {
        return Err(err());
    };
    let Expr::Path(func) = &*call.func else {
        return Err(err());
    };
    let tz_arg = if func.path.is_ident("cron") && call.args.len() == 2 {
        match &call.args[1] {
            Expr::Assign(a) if matches!(&*a.left, Expr::Path(p) if p.path.is_ident("tz")) => {
                Some(lit_str(&a.right)?)
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "expected `tz = \"Area/City\"`",
                ));
            }
        }
    } else {
        if call.args.len() != 1 {
            return Err(err());
        }
        None
    };
    let arg = &call.args[0];
    if func.path.is_ident("cron") {
        let expression = lit_str(arg)?;
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(syn::Error::new(
                arg.span(),
                format!(
                    "a cron expression here has 6 or 7 fields (seconds first), \
                     `sec min hour day month weekday [year]`; this one has {fields}"
                ),
            ));
        }
        if let Err(e) = modal_duration::cron::check_ranges(&expression) {
            return Err(syn::Error::new(
                arg.span(),
                format!("invalid cron expression: {e}"),
            ));
        }
        Ok(Kind::Cron {
            expression,
            timezone: tz_arg,
        })
    } else if func.path.is_ident("period") {
        let ms = duration_ms(arg)?;
        if ms == 0 {
            return Err(syn::Error::new(
                arg.span(),
                "a period must be longer than zero",
            ));
        }
        Ok(Kind::PeriodMs(ms))
    } else {
        Err(err())
    }
}

fn lit_str(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        _ => Err(syn::Error::new(expr.span(), "expected a string literal")),
    }
}

fn lit_u32(expr: &Expr) -> syn::Result<u32> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse(),
        _ => Err(syn::Error::new(expr.span(), "expected a whole number")),
    }
}

/// A duration: a number of seconds, or a string in the host's grammar
/// (`modal-duration`: `"500ms"`, `"2s"`, `"5m"`, `"1h30m"`, `"7d"`); a
/// string that is not one fails to compile with the host's message.
fn duration_ms(expr: &Expr) -> syn::Result<u64> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => Ok(i.base10_parse::<u64>()?.saturating_mul(1000)),
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => parse_duration_ms(&s.value()).map_err(|e| syn::Error::new(s.span(), e)),
        _ => Err(syn::Error::new(
            expr.span(),
            "expected a duration such as \"2s\" or a number of seconds",
        )),
    }
}

/// A duration string in whole milliseconds, or the host's error.
fn parse_duration_ms(text: &str) -> Result<u64, modal_duration::ParseError> {
    modal_duration::parse_millis(text)
}

/// The first paragraph of the doc comment, on one line.
fn doc_line(attrs: &[Attribute]) -> Option<String> {
    let lines = attrs.iter().filter_map(|a| match &a.meta {
        Meta::NameValue(nv) if nv.path.is_ident("doc") => lit_str(&nv.value).ok(),
        _ => None,
    });
    let mut paragraph = Vec::new();
    for line in lines {
        let line = line.trim().to_string();
        if line.is_empty() {
            if paragraph.is_empty() {
                continue;
            }
            break;
        }
        paragraph.push(line);
    }
    (!paragraph.is_empty()).then(|| paragraph.join(" "))
}

fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// The type a caller decodes: see [`Function::output`].
fn output_type(output: &ReturnType) -> Option<Type> {
    let ty = match output {
        ReturnType::Default => return Some(syn::parse_quote!(())),
        ReturnType::Type(_, ty) => &**ty,
    };
    let ok = match ty {
        Type::Path(p) => match p.path.segments.last() {
            Some(last) if last.ident == "Result" => match &last.arguments {
                syn::PathArguments::AngleBracketed(args) => match args.args.first() {
                    Some(syn::GenericArgument::Type(t)) => t.clone(),
                    _ => return None,
                },
                _ => return None,
            },
            _ => ty.clone(),
        },
        _ => ty.clone(),
    };
    let text = ok.to_token_stream().to_string();
    (!text.contains("impl ") && !text.contains('&')).then_some(ok)
}

/// The module of typed stubs of a plain or scheduled function `f`:
/// `f::remote`, `f::spawn` and `f::map`, calling it through the host on
/// the caller's version. Their bounds (input serializes, output
/// deserializes) hang on a lifetime parameter so that they are checked
/// where a stub is used, not here: an app whose types do not allow a
/// remote call still compiles, as long as it does not make one.
fn stubs(f: &Function) -> Option<TokenStream2> {
    let output = f.output.as_ref()?;
    if f.params
        .iter()
        .any(|(_, t)| t.to_token_stream().to_string().contains("impl "))
    {
        return None;
    }
    let p = quote!(::modal_guest::__private);
    let ident = &f.ident;
    let name = ident.to_string();
    let names: Vec<&Ident> = f.params.iter().map(|(n, _)| n).collect();
    let types: Vec<&Type> = f.params.iter().map(|(_, t)| t).collect();
    // The input as the callee decodes it: nothing, the one argument, or
    // the arguments as an array in parameter order.
    let (input_ty, input) = match f.params.as_slice() {
        [] => (quote!(()), quote!(())),
        [(n, t)] => (quote!(#t), quote!(#n)),
        _ => (quote!((#(#types,)*)), quote!((#(#names,)*))),
    };
    let params = f.params.iter().map(|(n, t)| quote!(#n: #t));
    let params: Vec<TokenStream2> = params.collect();
    let typed = quote!(<#p::Checked<'m, #input_ty, #output> as #p::Typed<#input_ty, #output>>);
    let bound = quote!(where #p::Checked<'m, #input_ty, #output>: #p::Typed<#input_ty, #output>);
    let doc_remote =
        format!("Calls `{name}` through the host (on this version) and waits for its output.");
    let doc_spawn =
        format!("Starts `{name}` in the background; `.get()` on the result waits for it.");
    let doc_map = format!(
        "Calls `{name}` once per input, in parallel, results in input order{}.",
        if f.params.len() > 1 {
            " (each input is a tuple of its arguments)"
        } else {
            ""
        }
    );
    let doc_async = |what: &str| {
        format!(
            "[`{what}`] for `async fn` functions: yields once, then blocks until the host answers (calls between functions are synchronous host imports)."
        )
    };
    let (doc_remote_async, doc_spawn_async, doc_map_async) =
        (doc_async("remote"), doc_async("spawn"), doc_async("map"));
    let map = (!f.params.is_empty()).then(|| {
        quote! {
            #[doc = #doc_map]
            pub fn map<'m>(
                inputs: impl ::core::iter::IntoIterator<Item = #input_ty>,
            ) -> ::std::vec::Vec<::core::result::Result<#output, ::modal_guest::CallFailure>>
            #bound
            {
                #typed::map(#name, inputs.into_iter().collect())
            }

            #[doc = #doc_map_async]
            pub async fn map_async<'m>(
                inputs: impl ::core::iter::IntoIterator<Item = #input_ty>,
            ) -> ::std::vec::Vec<::core::result::Result<#output, ::modal_guest::CallFailure>>
            #bound
            {
                #typed::map_async(#name, inputs.into_iter().collect()).await
            }
        }
    });
    let doc_module = format!("Typed stubs that call `{name}` through the host.");
    Some(quote! {
        #[doc = #doc_module]
        #[allow(dead_code, unused_imports, clippy::all)]
        pub mod #ident {
            use super::*;

            #[doc = #doc_remote]
            pub fn remote<'m>(#(#params),*) -> ::core::result::Result<#output, ::modal_guest::CallFailure>
            #bound
            {
                #typed::remote(#name, &#input)
            }

            #[doc = #doc_spawn]
            pub fn spawn<'m>(#(#params),*) -> ::core::result::Result<::modal_guest::FunctionCall<#output>, ::modal_guest::CallFailure>
            #bound
            {
                #typed::spawn(#name, &#input)
            }

            #[doc = #doc_remote_async]
            pub async fn remote_async<'m>(#(#params),*) -> ::core::result::Result<#output, ::modal_guest::CallFailure>
            #bound
            {
                #typed::remote_async(#name, #input).await
            }

            #[doc = #doc_spawn_async]
            pub async fn spawn_async<'m>(#(#params),*) -> ::core::result::Result<::modal_guest::FunctionCall<#output>, ::modal_guest::CallFailure>
            #bound
            {
                #typed::spawn_async(#name, #input).await
            }

            #map
        }
    })
}

/// The type a parameter borrows (`&str` → `str`), if it is a reference
/// anywhere at its top level or inside a tuple, slice or array.
fn borrowed_type(ty: &Type) -> Option<Type> {
    match ty {
        Type::Reference(r) => Some((*r.elem).clone()),
        Type::Paren(p) => borrowed_type(&p.elem),
        Type::Group(g) => borrowed_type(&g.elem),
        Type::Tuple(t) => t.elems.iter().find_map(borrowed_type),
        Type::Array(a) => borrowed_type(&a.elem),
        Type::Slice(s) => borrowed_type(&s.elem),
        _ => None,
    }
}

/// A type as `describe` shows it: spaced as Rust code is written, and
/// each path by its last segment (`modal_guest::Response` reads
/// `Response`, as `Number` does beside it).
fn type_text(ty: &impl ToTokens) -> String {
    let text = ty.to_token_stream().to_string();
    let text = text
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&");
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split("::").enumerate() {
        if i > 0 {
            // Drop the path segment that ends `out` (an identifier).
            let keep = out
                .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
                .len();
            out.truncate(keep);
        }
        out.push_str(part);
    }
    out
}

fn signature(sig: &syn::Signature, params: &[(Ident, Type)]) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|(name, ty)| format!("{name}: {}", type_text(ty)))
        .collect();
    let mut text = format!("{}({})", sig.ident, params.join(", "));
    if let ReturnType::Type(_, ty) = &sig.output {
        text.push_str(" -> ");
        text.push_str(&type_text(ty));
    }
    text
}

fn opt<T: ToTokens>(value: &Option<T>) -> TokenStream2 {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

fn opt_string(value: &Option<String>) -> TokenStream2 {
    match value {
        Some(v) => quote!(::core::option::Option::Some(::std::string::String::from(#v))),
        None => quote!(::core::option::Option::None),
    }
}

fn spec(f: &Function) -> TokenStream2 {
    let p = quote!(::modal_guest::__private);
    let name = f.ident.to_string();
    let kind = match &f.kind {
        Kind::Plain => quote!(#p::FunctionKind::Plain),
        Kind::Web { method } => {
            let method = opt_string(method);
            quote!(#p::FunctionKind::Web(#p::WebRoute { method: #method }))
        }
        Kind::Cron {
            expression,
            timezone,
        } => {
            let timezone = opt_string(timezone);
            quote!(#p::FunctionKind::Scheduled(#p::Schedule::Cron(#p::CronSchedule {
                expression: ::std::string::String::from(#expression),
                timezone: #timezone,
            })))
        }
        Kind::PeriodMs(ms) => quote!(#p::FunctionKind::Scheduled(#p::Schedule::PeriodMs(#ms))),
    };
    let description = opt_string(&f.description);
    let signature = opt_string(&Some(f.signature.clone()));
    let timeout = opt(&f.timeout_ms);
    let retries = opt(&f.retries);
    let min_warm = opt(&f.min_warm);
    let max_instances = opt(&f.max_instances);
    let max_requests = opt(&f.max_requests);
    quote! {
        #p::FunctionSpec {
            name: ::std::string::String::from(#name),
            kind: #kind,
            description: #description,
            signature: #signature,
            timeout_ms: #timeout,
            retries: #retries,
            min_warm: #min_warm,
            max_instances: #max_instances,
            max_requests_per_instance: #max_requests,
        }
    }
}

/// The adapter from JSON input to a plain or scheduled function's result.
fn call_adapter(f: &Function) -> TokenStream2 {
    let p = quote!(::modal_guest::__private);
    let ident = &f.ident;
    let adapter = format_ident!("__modal_call_{}", ident);
    let name = ident.to_string();
    let names: Vec<&Ident> = f.params.iter().map(|(n, _)| n).collect();
    let decode = match f.params.as_slice() {
        [] => quote!(#p::decode_none(input, #name)?;),
        [(param, ty)] => {
            let what = format!("{param}: {}", type_text(ty));
            quote!(let #param: #ty = #p::decode_one(input, #name, #what)?;)
        }
        params => {
            let fields = params.iter().map(|(n, t)| quote!(#n: #t));
            let what = params
                .iter()
                .map(|(n, t)| format!("{n}: {}", type_text(t)))
                .collect::<Vec<_>>()
                .join(", ");
            quote! {
                #[derive(#p::serde::Deserialize)]
                #[serde(crate = "::modal_guest::__private::serde", deny_unknown_fields)]
                struct Args { #(#fields),* }
                let Args { #(#names),* } = #p::decode_args(input, #name, #what)?;
            }
        }
    };
    let run = if f.is_async {
        quote!(#p::block_on(#ident(#(#names),*)))
    } else {
        quote!(#ident(#(#names),*))
    };
    let encode = if f.returns_result {
        quote!(#p::encode_result(#run))
    } else {
        quote!(#p::encode(&#run))
    };
    quote! {
        fn #adapter(input: &[u8]) -> ::core::result::Result<::std::vec::Vec<u8>, #p::CallError> {
            #decode
            #encode
        }
    }
}

fn glue(functions: &[Function], enter: Option<&Ident>, exit: Option<&Ident>) -> TokenStream2 {
    let p = quote!(::modal_guest::__private);
    let specs = functions.iter().map(spec);
    let callable: Vec<&Function> = functions
        .iter()
        .filter(|f| !matches!(f.kind, Kind::Web { .. }))
        .collect();
    let adapters = callable.iter().map(|f| call_adapter(f));
    let entries = callable.iter().map(|f| {
        let name = f.ident.to_string();
        let adapter = format_ident!("__modal_call_{}", f.ident);
        quote!((#name, #adapter as #p::CallHandler))
    });
    let (has_enter, has_exit) = (enter.is_some(), exit.is_some());
    let mut secrets: Vec<&String> = functions.iter().flat_map(|f| &f.secrets).collect();
    secrets.sort();
    secrets.dedup();
    let enter_body = match enter {
        Some(hook) => quote!(#p::hook_result(#hook())),
        None => quote!(::core::result::Result::Ok(())),
    };
    let exit_body = match exit {
        Some(hook) => quote!(#hook();),
        None => quote!(),
    };
    let web: Vec<&Function> = functions
        .iter()
        .filter(|f| matches!(f.kind, Kind::Web { .. }))
        .collect();
    let http = if web.is_empty() {
        quote!()
    } else {
        let handlers = web.iter().map(|f| {
            let ident = &f.ident;
            let name = ident.to_string();
            let method = match &f.kind {
                Kind::Web { method: Some(m) } => quote!(::core::option::Option::Some(#m)),
                _ => quote!(::core::option::Option::None),
            };
            let (param, args) = if f.params.is_empty() {
                (quote!(_request), quote!())
            } else {
                (quote!(request), quote!(request))
            };
            // The first of IntoResponse, Result<Serialize, Display> and
            // Serialize that the return type meets (autoref
            // specialization, see modal-guest's respond.rs); an error
            // about it points at the return type and names the function.
            let respond = quote_spanned! {f.output_span=> (&&&&returned).respond() };
            let respond = quote! {
                let returned = #p::Returned::<_, __modal_web_functions::#ident>::new(value);
                #respond
            };
            let body = if f.is_async {
                quote!(#p::block_on(async move {
                    let value = #ident(#args).await;
                    #respond
                }))
            } else {
                quote!({
                    let value = #ident(#args);
                    #respond
                })
            };
            let call = quote! {
                |#param: ::modal_guest::Request| {
                    #[allow(unused_imports)]
                    use #p::{ViaIntoResponse as _, ViaResult as _, ViaSerialize as _};
                    #body
                }
            };
            quote!(#p::WebHandler { name: #name, method: #method, run: #call })
        });
        let markers = web.iter().map(|f| &f.ident);
        quote! {
            /// One type per web function, named like it: the compile
            /// error of a return type that is not a response names it.
            #[allow(non_camel_case_types, dead_code)]
            mod __modal_web_functions {
                #(pub struct #markers {})*
            }

            impl #p::HttpGuest for __ModalApp {
                fn handle(request: #p::IncomingRequest, out: #p::ResponseOutparam) {
                    #p::serve(request, out, &[#(#handlers),*]);
                }
            }
            #p::wasip2::http::proxy::export!(__ModalApp with_types_in ::modal_guest::__private::wasip2);
        }
    };
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, non_camel_case_types, clippy::all)]
        const _: () = {
            struct __ModalApp;

            #(#adapters)*

            impl #p::FunctionGuest for __ModalApp {
                fn describe() -> #p::AppSpec {
                    #p::app_spec(::std::vec![#(#specs),*], (#has_enter, #has_exit))
                }

                fn call(
                    function: ::std::string::String,
                    input: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, #p::CallError> {
                    #p::dispatch(&function, &input, &[#(#entries),*])
                }
            }

            impl #p::NeedsGuest for __ModalApp {
                fn secrets() -> ::std::vec::Vec<::std::string::String> {
                    ::std::vec![#(::std::string::String::from(#secrets)),*]
                }
            }

            impl #p::LifecycleGuest for __ModalApp {
                fn enter() -> ::core::result::Result<(), ::std::string::String> {
                    #enter_body
                }

                fn exit() {
                    #exit_body
                }
            }

            ::modal_guest::__bindings::__export_functions!(__ModalApp with_types_in ::modal_guest::__bindings);

            #http
        };
    }
}

#[cfg(test)]
mod tests {
    use super::{duration_ms, parse_duration_ms, type_text};
    use std::path::Path;

    #[test]
    fn a_borrowed_parameter_names_the_owned_type_to_take() {
        use quote::ToTokens;
        let message = |f: &str| {
            let item: syn::ItemFn = syn::parse_str(f).unwrap();
            let attr: syn::Attribute = syn::parse_quote!(#[function]);
            match super::parse_function(&item, &attr) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{f} should be refused"),
            }
        };
        assert_eq!(
            message("fn greet(name: &str) -> String { String::new() }"),
            "parameter `name` borrows (`&str`); a modal function's arguments are decoded \
             from JSON into owned values: take `String` instead"
        );
        assert!(message("fn f(data: &[u8]) {}").ends_with("take `Vec<u8>` instead"));
        assert!(message("fn f(p: (u32, &'static str)) {}").contains("parameter `p` borrows"));
        let ok: syn::ItemFn = syn::parse_str("fn f(name: String, n: u32) {}").unwrap();
        let attr: syn::Attribute = syn::parse_quote!(#[function]);
        assert!(
            super::parse_function(&ok, &attr).is_ok(),
            "{}",
            ok.to_token_stream()
        );
    }

    #[test]
    fn async_functions_are_accepted_and_hooks_stay_plain() {
        let attr: syn::Attribute = syn::parse_quote!(#[function(web)]);
        let item: syn::ItemFn =
            syn::parse_str("async fn page(req: Request) -> Result<Page, String> { todo!() }")
                .unwrap();
        let f = super::parse_function(&item, &attr).expect("an async web function");
        assert!(f.is_async && f.returns_result);
        assert_eq!(f.signature, "page(req: Request) -> Result<Page, String>");
        let hook: syn::ItemFn = syn::parse_str("async fn load() {}").unwrap();
        let enter: syn::Attribute = syn::parse_quote!(#[enter]);
        let error = super::check_hook(&hook, &enter, "enter", &mut None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "an `#[enter]` hook is a plain `fn` without parameters"
        );
    }

    #[test]
    fn types_read_by_their_last_segment() {
        let text = |t: &str| type_text(&syn::parse_str::<syn::Type>(t).unwrap());
        assert_eq!(text("modal_guest::Response"), "Response");
        assert_eq!(
            text("Result<std::vec::Vec<crate::Item>, std::string::String>"),
            "Result<Vec<Item>, String>"
        );
        assert_eq!(text("&'static str"), "&'static str");
        assert_eq!(
            text("Option<(u32, core::primitive::u8)>"),
            "Option<(u32, u8)>"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2s"), Ok(2000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert!(parse_duration_ms("2").is_err());
        assert!(parse_duration_ms("s").is_err());
        assert!(parse_duration_ms("2 days").is_err());
        let seconds: syn::Expr = syn::parse_str("5").unwrap();
        assert_eq!(duration_ms(&seconds).unwrap(), 5000);
    }

    /// The compile error of a bad duration is, word for word, the host's
    /// deploy-time error: both are checked against the golden files of
    /// `tests/ui/duration/` (input `NAME.txt`, message `NAME.err`).
    #[test]
    fn bad_durations_fail_with_the_hosts_golden_messages() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui/duration");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let input = entry.unwrap().path();
            if input.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            let text = std::fs::read_to_string(&input).unwrap();
            let expected = std::fs::read_to_string(input.with_extension("err")).unwrap();
            let literal: syn::Expr = syn::parse_str(&format!("{text:?}")).unwrap();
            let error = duration_ms(&literal).unwrap_err();
            assert_eq!(
                format!("{error}\n"),
                expected,
                "the macro's message for {}",
                input.display()
            );
            checked += 1;
        }
        assert!(checked > 0, "no duration cases in {}", dir.display());
    }
}
