"""XSS payloads for the hostile-content suite, built around one beacon call per payload.

Each payload, if any script in it ever runs, requests `{beacon}/hit/{n}` from a loopback server:
the test then knows not only that something ran but which payload did it. The list covers script
tags, event handlers, script URLs in every spelling a browser accepts, SVG and MathML, CSS, and
malformed markup that parsers disagree about. Pytest-free so a bench or a manual run can use it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Payload:
    n: int
    kind: str
    text: str


def _js(beacon: str, n: int) -> str:
    return f"fetch('{beacon}/hit/{n}')"


def _templates() -> list[tuple[str, str]]:
    """(kind, template) with {JS} for the script to run and {URL} for a beacon URL to load."""
    script_tags = [
        "<script>{JS}</script>",
        "<ScRiPt>{JS}</sCrIpT>",
        "<script type=text/javascript>{JS}</script>",
        "<script src={URL}.js></script>",
        "</title><script>{JS}</script>",
        "</textarea><script>{JS}</script>",
        "<scr<script>ipt>{JS}</scr</script>ipt>",
        "<<script>script>{JS}<</script>/script>",
        "<script>/*</script><script>*/{JS}</script>",
        "<script\x0c>{JS}</script>",
        "<script/x>{JS}</script>",
        '"><script>{JS}</script>',
        "'><script>{JS}</script>",
        "--><script>{JS}</script>",
        "]]><script>{JS}</script>",
    ]
    handlers = [
        "<img src=x onerror={JS}>",
        '<img src="x" onerror="{JS}">',
        "<IMG SRC=x ONERROR={JS}>",
        "<img src=x onerror\x0b={JS}>",
        "<img/src=x/onerror={JS}>",
        "<svg onload={JS}>",
        "<svg/onload={JS}>",
        "<body onload={JS}>",
        "<details open ontoggle={JS}>",
        "<video><source onerror={JS}></video>",
        "<audio src=x onerror={JS}>",
        "<input autofocus onfocus={JS}>",
        "<select autofocus onfocus={JS}>",
        "<textarea autofocus onfocus={JS}>",
        "<marquee onstart={JS}>x</marquee>",
        "<iframe onload={JS}></iframe>",
        '<iframe srcdoc="<script>{JS}</script>"></iframe>',
        "<object data=x onerror={JS}></object>",
        "<div onmouseover={JS}>hover</div>",
        "<a onclick={JS} href=#>click</a>",
        "<form onsubmit={JS}><button>go</button></form>",
        "<style onload={JS}></style>",
        "<link rel=stylesheet href=x onerror={JS}>",
        "<img src=x:alert(1) onerror={JS}>",
        '<img src="x` `<script>{JS}</script>"` `>',
        "<image src=x onerror={JS}>",
        "<isindex type=image src=x onerror={JS}>",
        "<table background=x onerror={JS}>",
        "<keygen autofocus onfocus={JS}>",
        "<frameset onload={JS}>",
    ]
    urls = [
        '<a href="javascript:{JS}">link</a>',
        '<a href="JaVaScRiPt:{JS}">link</a>',
        '<a href="java\tscript:{JS}">link</a>',
        '<a href="java\nscript:{JS}">link</a>',
        '<a href=" javascript:{JS}">link</a>',
        '<a href="&#106;avascript:{JS}">link</a>',
        '<a href="&#x6A;avascript:{JS}">link</a>',
        '<a href="&#0000106&#0000097vascript:{JS}">link</a>',
        '<a href="javascript&colon;{JS}">link</a>',
        '<a href="%6Aavascript:{JS}">link</a>',
        '<a href="vbscript:msgbox(1)">link</a>',
        '<a href="data:text/html;base64,{B64}">link</a>',
        '<a href="data:text/html,<script>{JS}</script>">link</a>',
        '<iframe src="javascript:{JS}"></iframe>',
        '<iframe src="data:text/html;base64,{B64}"></iframe>',
        '<embed src="javascript:{JS}">',
        '<object data="javascript:{JS}"></object>',
        '<form><button formaction="javascript:{JS}">go</button></form>',
        '<form action="javascript:{JS}"><input type=submit></form>',
        '<meta http-equiv=refresh content="0;url=javascript:{JS}">',
        '<base href="javascript:{JS}//">',
        '<img src="javascript:{JS}">',
        '<a href="&#x0A;javascript:{JS}">link</a>',
        '<a href="jav&#x09;ascript:{JS}">link</a>',
        '<a href="\x01javascript:{JS}">link</a>',
    ]
    svg_math = [
        "<svg><script>{JS}</script></svg>",
        '<svg><a xlink:href="javascript:{JS}"><text x=1 y=10>x</text></a></svg>',
        "<svg><animate onbegin={JS} attributeName=x dur=1s>",
        "<svg><set onbegin={JS} attributeName=x to=1>",
        "<svg><foreignObject><img src=x onerror={JS}></foreignObject></svg>",
        '<svg><use href="data:image/svg+xml;base64,{SVG64}#x"></use></svg>',
        "<math><mtext><table><mglyph><style><img src=x onerror={JS}>",
        '<math href="javascript:{JS}">x</math>',
        "<svg><style><img src=x onerror={JS}></style></svg>",
        "<svg><title><script>{JS}</script></title></svg>",
    ]
    css = [
        "<style>@import '{URL}.css';</style>",
        "<style>body{{background:url('{URL}.png')}}</style>",
        "<div style=\"background:url('{URL}.png')\">x</div>",
        '<div style="background:url(javascript:{JS})">x</div>',
        '<div style="width:expression({JS})">x</div>',
        '<link rel=stylesheet href="{URL}.css">',
        '<div style="behavior:url({URL}.htc)">x</div>',
        "<style>*{{-moz-binding:url('{URL}.xml#x')}}</style>",
        '<img src="{URL}.gif">',
        "<div style=\"list-style:url('{URL}.png')\">x</div>",
    ]
    malformed = [
        '<img """><script>{JS}</script>">',
        "<img src=x onerror={JS}//",
        '<!--<img src="--><img src=x onerror={JS}//">',
        '<noscript><p title="</noscript><img src=x onerror={JS}>">',
        '<a"/onclick=({JS})>x</a>',
        "<img src=`x`onerror={JS}>",
        "<div><p>unclosed <b><i><script>{JS}</script>",
        "<xmp><script>{JS}</script></xmp>",
        "<plaintext><script>{JS}</script>",
        "<template><script>{JS}</script></template>",
        "<![CDATA[<script>{JS}</script>]]>",
        '<?xml-stylesheet href="{URL}.xsl"?><script>{JS}</script>',
        '<div id="x" <script>{JS}</script>>',
        "&lt;script&gt;{JS}&lt;/script&gt;",
        "&#60;img src=x onerror={JS}&#62;",
        "<sCrIpT>{JS}</ScRiPt><!--",
        "<img src=x onerror=\"&#102;etch('x')\" onerror={JS}>",
        "<a href=# onmouseover={JS}>x</a><!-- unterminated",
        "<title><script>{JS}</script></title>",
        "<textarea><script>{JS}</script></textarea>",
    ]
    groups = [
        ("script", script_tags),
        ("handler", handlers),
        ("url", urls),
        ("svg-math", svg_math),
        ("css", css),
        ("malformed", malformed),
    ]
    return [(kind, t) for kind, items in groups for t in items]


def payloads(beacon: str) -> list[Payload]:
    out = []
    for n, (kind, template) in enumerate(_templates()):
        js = _js(beacon, n)
        page = f"<script>{js}</script>"
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" id="x"><script>{js}</script></svg>'
        text = (
            template.replace("{JS}", js)
            .replace("{URL}", f"{beacon}/hit/{n}")
            .replace("{B64}", base64.b64encode(page.encode()).decode())
            .replace("{SVG64}", base64.b64encode(svg.encode()).decode())
            .replace("{{", "{")
            .replace("}}", "}")
        )
        out.append(Payload(n=n, kind=kind, text=text))
    return out


def link_payloads(beacon: str) -> list[str]:
    """Values for an item's <link> and enclosure url: only http(s) may ever reach a mail."""
    js = _js(beacon, 9999)
    return [
        f"javascript:{js}",
        f"JavaScript:{js}",
        f" javascript:{js}",
        f"java\tscript:{js}",
        f"&#106;avascript:{js}",
        "vbscript:msgbox(1)",
        "data:text/html;base64," + base64.b64encode(f"<script>{js}</script>".encode()).decode(),
        f'https://wire.example.com/a"><script>{js}</script>',
        f"https://wire.example.com/a' onmouseover='{js}",
        "file:///etc/passwd",
    ]
