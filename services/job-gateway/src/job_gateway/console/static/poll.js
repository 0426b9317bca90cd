// Live parts of a page refresh on "poll-tick", fired on <body> every 2 s while the page is
// visible: a hidden tab asks the gateway nothing. Elements listen with
// hx-trigger="poll-tick from:body" (the page's Content-Security-Policy allows no inline
// script, and htmx's trigger filters would need eval).
"use strict";

setInterval(() => {
  if (document.visibilityState === "visible") {
    document.body.dispatchEvent(new CustomEvent("poll-tick"));
  }
}, 2000);
