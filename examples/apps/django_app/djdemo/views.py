"""djdemo's views: a JSON API, a CSRF-protected form, a streamed CSV export and a file
download."""

import os
import re
import tempfile
import time

import django
from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.http import FileResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse

# The download: `i,i*i` for i in range(REPORT_ROWS), one per line, written once at start-up.
REPORT_ROWS = 50_000
REPORT_PATH = settings.DATA_DIR / "squares.csv"
with open(REPORT_PATH, "w", encoding="ascii", newline="\n") as _report:
    _report.writelines(f"{i},{i * i}\n" for i in range(REPORT_ROWS))


def home(request):
    return render(request, "djdemo/home.html")


def api_status(request):
    return JsonResponse({
        "framework": "django",
        "version": django.get_version(),
        "method": request.method,
        "script_name": request.META.get("SCRIPT_NAME", ""),
        "path": request.path,
        "path_info": request.path_info,
        "query": {key: request.GET.getlist(key) for key in request.GET},
        "guestbook_url": reverse("guestbook"),
        "users": User.objects.count(),
    })


class GuestbookForm(forms.Form):
    name = forms.CharField(max_length=50)
    message = forms.CharField(max_length=500, widget=forms.Textarea)


def guestbook(request):
    if request.method == "POST":
        form = GuestbookForm(request.POST)
        if form.is_valid():
            # Redirect after POST; reverse() includes the mount prefix.
            return HttpResponseRedirect(f"{reverse('guestbook')}?signed={form.cleaned_data['name']}")
    else:
        form = GuestbookForm()
    return render(request, "djdemo/guestbook.html", {
        "form": form,
        "signed": request.GET.get("signed"),
    })


def _wait_for_gate(token):
    """The tests pass ?gate=TOKEN to prove that rows reach the client one by one: the
    export then holds its remaining rows until the file wsgi-gate-TOKEN appears in the
    temp dir (for a minute at most), and removes it."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", token):
        return
    path = os.path.join(tempfile.gettempdir(), f"wsgi-gate-{token}")
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)
    try:
        os.remove(path)
    except OSError:
        pass


def export(request):
    rows = max(0, min(100_000, int(request.GET.get("rows", "10") or 0)))
    gate = request.GET.get("gate")

    def generate():
        yield "n,square\n"
        if gate:
            _wait_for_gate(gate)
        for i in range(rows):
            yield f"{i},{i * i}\n"

    response = StreamingHttpResponse(generate(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="squares.csv"'
    return response


def download(request):
    # FileResponse hands the open file to the server's wsgi.file_wrapper.
    return FileResponse(open(REPORT_PATH, "rb"), as_attachment=True, filename="squares.csv",
                        content_type="text/csv")
