# segbridge_explorer.py: an "AI analysis" button on the series page of the
# legacy Orthanc Explorer (the one Debian's Orthanc serves at /app/), for
# Debian's orthanc-python plugin (package orthanc-python, plugin 4.0).
#
# Load it with Orthanc's configuration:
#
#   "Plugins": ["/usr/lib/orthanc/libOrthancPython.so.4.0"],
#   "PythonScript": "/etc/orthanc/segbridge_explorer.py",
#   "Segbridge": {
#     "Url": "http://127.0.0.1:8080",        the bridge, as Orthanc reaches it
#     "ApiToken": "${SEGBRIDGE_API_TOKEN}",   the bridge's API token, if it has one
#     "PublicUrl": "http://127.0.0.1:8080"    the bridge as browsers reach it (default Url)
#   }
#
# It adds three routes to Orthanc's REST API, behind Orthanc's own
# authentication, that forward to the bridge with its API token (which never
# reaches the browser):
#
#   POST /segbridge/series/{id}/segment   -> POST /v1/series/{id}/segment (model=, force=)
#   GET  /segbridge/series/{id}           -> GET  /v1/series/{id}
#   GET  /segbridge/config                -> {"status_page": PublicUrl}
#
# and, through ExtendOrthancExplorer, the button and the job's state on the
# series page. Orthanc Explorer 2 can call the same POST route from a custom
# button (orthanc-lua/oe2-buttons.json).
#
# Orthanc runs Python callbacks in its HTTP threads; the bridge answers a
# trigger at once (it queues the job), and each forward is bounded by
# TIMEOUT, so a bridge that is down costs a click, not Orthanc.

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import orthanc

TIMEOUT = 10  # seconds per forward to the bridge

ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")


def settings():
    cfg = json.loads(orthanc.GetConfiguration()).get("Segbridge", {})
    url = (cfg.get("Url") or "http://127.0.0.1:8080").rstrip("/")
    return url, cfg.get("ApiToken") or "", (cfg.get("PublicUrl") or url).rstrip("/")


def answer(output, code, body):
    # json.dumps escapes everything beyond ASCII, so the text's length is
    # its length in bytes, which SendHttpStatus (plugin 4.0) wants as well.
    data = json.dumps(body)
    if code // 100 == 2:
        output.AnswerBuffer(data, "application/json")
    else:
        output.SendHttpStatus(code, data, len(data))


def forward(output, method, path, query=None):
    url, token, _ = settings()
    target = url + path
    if query:
        target += "?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(target, method=method, data=b"" if method == "POST" else None)
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            code, body = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        answer(output, 502, {"error": "the segbridge bridge at %s cannot be reached: %s" % (url, getattr(e, "reason", e))})
        return
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = {"error": "the bridge answered %d without JSON" % code}
    if code == 401:
        # The browser must not be asked for Orthanc credentials again: the
        # token in Orthanc's configuration is the bridge's problem.
        code, parsed = 502, {"error": "the bridge refused Segbridge.ApiToken (401): set it to the bridge's SEGBRIDGE_API_TOKEN"}
    answer(output, code, parsed)


def series_id(output, request):
    sid = request["groups"][0]
    if not ORTHANC_ID.match(sid):
        answer(output, 404, {"error": "not an Orthanc series id"})
        return None
    return sid


def on_segment(output, uri, **request):
    if request["method"] != "POST":
        output.SendMethodNotAllowed("POST")
        return
    sid = series_id(output, request)
    if sid is None:
        return
    query = {k: v for k, v in request.get("get", {}).items() if k in ("model", "force")}
    forward(output, "POST", "/v1/series/%s/segment" % sid, query)


def on_status(output, uri, **request):
    if request["method"] != "GET":
        output.SendMethodNotAllowed("GET")
        return
    sid = series_id(output, request)
    if sid is None:
        return
    forward(output, "GET", "/v1/series/%s" % sid)


def on_config(output, uri, **request):
    _, _, public = settings()
    answer(output, 200, {"status_page": public + "/"})


EXPLORER_JS = r"""
// segbridge: the AI analysis button on the series page (segbridge_explorer.py).
(function () {
  var pollTimer = null;

  function seriesId() {
    return $.mobile.pageData ? $.mobile.pageData.uuid : null;
  }

  function show(text, link) {
    var li = $('#segbridge-state');
    li.find('.segbridge-text').text(text);
    var a = li.find('a.segbridge-link');
    if (link) { a.attr('href', link.href).text(link.text).show(); } else { a.hide(); }
    li.show();
  }

  function describe(v) {
    var job = v.jobs && v.jobs.length ? v.jobs[0] : null;
    switch (v.state) {
      case 'queued': return 'AI analysis: queued';
      case 'running': return 'AI analysis: running' + (job && job.stage ? ' (' + job.stage + ')' : '');
      case 'done': return 'AI analysis: done';
      case 'failed': return 'AI analysis failed: ' + (job ? job.error : '');
      case 'skipped': return 'AI analysis skipped: ' + (job ? job.error : '');
      case 'cancelled': return 'AI analysis cancelled';
    }
    return '';
  }

  function render(id, v) {
    var job = v.jobs && v.jobs.length ? v.jobs[0] : null;
    var link = null;
    if (v.state === 'done' && job && job.seg_series_id) {
      link = { href: '#series?uuid=' + job.seg_series_id, text: 'Open the segmentation' };
    }
    var text = describe(v);
    if (text) { show(text, link); } else { $('#segbridge-state').hide(); }
    $('#segbridge-analyse').closest('li').toggleClass('ui-disabled', v.state === 'queued' || v.state === 'running');
    clearTimeout(pollTimer);
    if (v.state === 'queued' || v.state === 'running') {
      pollTimer = setTimeout(function () { refresh(id); }, 1500);
    }
  }

  function refresh(id) {
    if (id !== seriesId()) return; // the page moved on
    $.ajax({ url: '../segbridge/series/' + id, dataType: 'json', cache: false,
      success: function (v) { render(id, v); },
      error: function () { $('#segbridge-state').hide(); } });
  }

  var statusPage = null;

  function linkStatusPage() {
    var id = seriesId();
    if (statusPage && id) $('#segbridge-state a.segbridge-page').attr('href', statusPage + '?series=' + id);
  }

  $('#series').live('pagebeforecreate', function () {
    var li = $('<li data-icon="star"><a href="#" id="segbridge-analyse">AI analysis</a></li>');
    li.insertAfter($('#series-anonymize').parent());
    var state = $('<li id="segbridge-state" data-theme="e" style="display:none">' +
      '<span class="segbridge-text"></span> <a class="segbridge-link" href="#" style="display:none"></a> ' +
      '<a class="segbridge-page" href="#" target="_blank" rel="noopener">Status page</a></li>');
    state.insertAfter(li);
    $.ajax({ url: '../segbridge/config', dataType: 'json',
      success: function (c) { statusPage = c.status_page; linkStatusPage(); } });
    $('#segbridge-analyse').live('click', function (e) {
      e.preventDefault();
      var id = seriesId();
      if (!id) return;
      show('AI analysis: starting…');
      $.ajax({ url: '../segbridge/series/' + id + '/segment', type: 'POST', dataType: 'json',
        success: function (job) { render(id, { state: job.state, jobs: [job] }); },
        error: function (xhr) {
          var msg = 'AI analysis refused';
          try { msg += ': ' + JSON.parse(xhr.responseText).error; } catch (err) { msg += ' (' + xhr.status + ')'; }
          show(msg);
        } });
    });
  });

  $('#series').live('pagebeforeshow', function () {
    $('#segbridge-state').hide();
    var id = seriesId();
    if (id) refresh(id);
    linkStatusPage();
  });
})();
"""

orthanc.RegisterRestCallback("/segbridge/series/(.*)/segment", on_segment)
orthanc.RegisterRestCallback("/segbridge/series/([^/]*)", on_status)
orthanc.RegisterRestCallback("/segbridge/config", on_config)
orthanc.ExtendOrthancExplorer(EXPLORER_JS)
