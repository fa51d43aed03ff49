// The server answered a page without its token. The pages take the token
// out of the address bar once they have read it (it is kept for this tab
// in sessionStorage), so a reload lands here: come back with the tab's
// token, once (a wrong token stays on this page).
(function () {
  const token = sessionStorage.getItem("chat.token");
  const params = new URLSearchParams(location.search);
  if (token && !params.has("token")) {
    params.set("token", token);
    location.replace(location.pathname + "?" + params + location.hash);
  }
})();
