"""`facesets serve inference --install-task`: a Windows Task Scheduler task that starts the
inference service when its user logs on (or at boot) and starts it again when it fails.

DirectML runs in the user's session, so the default trigger is the user's logon; `boot` runs it
before anyone logs on (under the same account, with its password stored by Task Scheduler).
"""

from __future__ import annotations

import getpass
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

TASK_NAME = "facesets\\inference"
NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"


def _interpreter() -> str:
    """pythonw.exe next to python.exe where there is one: no console window at logon."""
    exe = Path(sys.executable)
    windowless = exe.with_name("pythonw.exe")
    return str(windowless if exe.name.lower() == "python.exe" and windowless.exists() else exe)


def task_xml(
    config: Path | None, service: str = "inference", trigger: str = "logon", user: str = ""
) -> str:
    """The task definition (Task Scheduler schema 1.2)."""
    user = user or getpass.getuser()
    arguments = ["-m", "facesets.serve"]
    if config is not None:
        arguments += ["--config", str(config)]
    arguments.append(service)
    quoted = " ".join(f'"{a}"' if " " in a else a for a in arguments)
    when = (
        "<BootTrigger><Enabled>true</Enabled></BootTrigger>"
        if trigger == "boot"
        else f"<LogonTrigger><Enabled>true</Enabled><UserId>{escape(user)}</UserId></LogonTrigger>"
    )
    logon = "Password" if trigger == "boot" else "InteractiveToken"
    about = f"facesets {service} service (started at {trigger}, restarted on failure)"
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="{NAMESPACE}">
  <RegistrationInfo>
    <Description>{about}</Description>
    <URI>\\{escape(TASK_NAME)}</URI>
  </RegistrationInfo>
  <Triggers>
    {when}
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{escape(user)}</UserId>
      <LogonType>{logon}</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(_interpreter())}</Command>
      <Arguments>{escape(quoted)}</Arguments>
    </Exec>
  </Actions>
</Task>
"""


def install(xml: str, target: str) -> int:
    """`target` "-": print the XML; a file: write it (UTF-16, as Task Scheduler reads it);
    "register" on Windows: register the task with schtasks."""
    if target == "-":
        print(xml, end="")
        return 0
    if target != "register":
        Path(target).write_text(xml, encoding="utf-16")
        print(f'wrote {target}; register it with: schtasks /Create /TN "{TASK_NAME}" /XML {target}')
        return 0
    if sys.platform != "win32":
        raise SystemExit(
            "error: registering a scheduled task needs Windows; pass --install-task FILE to "
            "write the task definition instead"
        )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "task.xml"
        path.write_text(xml, encoding="utf-16")
        done = subprocess.run(
            ["schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(path), "/F"], check=False
        )
    if done.returncode == 0:
        print(f'registered; start it now with: schtasks /Run /TN "{TASK_NAME}"')
    return done.returncode
