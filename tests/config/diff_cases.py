"""Configs run through both real `xl -N create` and ours (uuid fixed)."""
U = 'uuid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"\n'

CASES = {
    "pvh-minimal": 'name="m"\ntype="pvh"\nkernel="/k"\n',
    "pv-default-type": 'name="p"\nkernel="/k"\nmemory=128\n',
    "builder-hvm": 'name="b"\nbuilder="hvm"\nmemory=256\n',
    "type-prefix": 'name="b"\ntype="h"\n',
    "memory-maxmem": 'name="m"\nkernel="/k"\nmemory=1024\nmaxmem=2048\n',
    "vcpus-maxvcpus": 'name="v"\nkernel="/k"\nvcpus=2\nmaxvcpus=4\n',
    "maxvcpus-only": 'name="v"\nkernel="/k"\nmaxvcpus=3\n',
    "cpus-string": 'name="c"\nkernel="/k"\nvcpus=3\ncpus="0-5,^2,9"\n',
    "cpus-all": 'name="c"\nkernel="/k"\nvcpus=2\ncpus="all"\n',
    "cpus-list": 'name="c"\nkernel="/k"\nvcpus=3\ncpus=["0","1-2","4,5"]\n',
    "cpus-list-long": 'name="c"\nkernel="/k"\nvcpus=1\ncpus=["0","1"]\n',
    "cpus-soft": 'name="c"\nkernel="/k"\nvcpus=2\ncpus_soft="1"\ncpus="0-1"\n',
    "actions": ('name="a"\nkernel="/k"\non_poweroff="preserve"\non_reboot="rename-restart"\n'
                'on_watchdog="coredump-destroy"\non_crash="coredump-restart"\n'
                'on_soft_reset="destroy"\n'),
    "sched": 'name="s"\nkernel="/k"\ncpu_weight=512\ncap=25\nperiod=100\nslice=5\nlatency=2\nextratime=1\n',
    "grants": 'name="g"\nkernel="/k"\nmax_grant_frames=32\nmax_maptrack_frames=0\n',
    "cmdline-root-extra": 'name="c"\nkernel="/k"\nroot="/dev/xvda1"\nextra="quiet"\n',
    "cmdline-root": 'name="c"\nkernel="/k"\nroot="/dev/xvda1"\n',
    "cmdline-extra": 'name="c"\nkernel="/k"\nextra="quiet splash"\n',
    "cmdline-wins": 'name="c"\nkernel="/k"\ncmdline="a=b"\nroot="/x"\n',
    "ramdisk": 'name="r"\ntype="pvh"\nkernel="/k"\nramdisk="/i"\ndevice_tree="/dt"\n',
    "bootloader": 'name="b"\nbootloader="pygrub"\nbootloader_args=["-q","--x"]\n',
    "bootloader-args-string": 'name="b"\nbootloader="pygrub"\nbootloader_args="-q  --x"\n',
    "pvgrub": 'name="g"\nfirmware="pvgrub64"\n',
    "misc-defbools": ('name="d"\nkernel="/k"\nhap=0\noos=1\nlocaltime=1\nnomigrate=1\n'
                      'acpi=0\ndriver_domain=1\nnestedhvm=1\ndm_restrict=1\n'
                      'xend_suspend_evtchn_compat=1\n'),
    "misc-numbers": ('name="n"\nkernel="/k"\nshadow_memory=8\nrtc_timeoffset="-3600"\n'
                     'videoram=8\nmax_event_channels=1023\nvmtrace_buf_kb=64\n'),
    "tsc-timer-altp2m": 'name="t"\ntype="pvh"\nkernel="/k"\ntsc_mode="native"\ntimer_mode="no_missed_ticks_pending"\naltp2m="mixed"\n',
    "tsc-int": 'name="t"\nkernel="/k"\ntsc_mode=2\naltp2m=1\n',
    "seclabels": 'name="s"\nkernel="/k"\ninit_seclabel="a:b:c"\nseclabel="d:e:f"\npool="Pool-0"\n',
    "pvshim": 'name="s"\ntype="pvh"\nkernel="/k"\npvshim=1\npvshim_path="/p"\npvshim_cmdline="c"\npvshim_extra="e"\n',
    "e820": 'name="e"\nkernel="/k"\ne820_host=1\n',
    "pci-pv": 'name="p"\nkernel="/k"\npci=["0000:03:00.0","04:01.*@2,msitranslate=1,seize=1,power_mgmt=1,rdm_policy=strict"]\n',
    "disks": ('name="d"\nkernel="/k"\ndisk=["/dev/vg/a,raw,xvda,rw", "phy:/dev/b,xvdb,r", '
              '"vdev=xvdc,format=qcow,access=ro,target=/c", "qcow2:/d.img,xvdd,w", '
              '"file:/e.iso,hdc:cdrom,r", ",,hdd:cdrom,r", "/f,,xvde", "/g,vhd,xvdf,w,",'
              '"vdev=xvdg,backendtype=qdisk,backend=dom1,script=block-x,discard,direct-io-safe,target=/h",'
              '"vdev=xvdh,devtype=cdrom,target=", "vdev=xvdi,no-discard,colo,colo-host=h,colo-port=7,target=/i",'
              '"vdev=xvdj,format=qed,specification=xen,target=/j", "nbd:host:1234,xvdk,w",'
              '"  /k ,  raw,xvdl", "tap:aio:/l,xvdm", "vdev=xvdn, cdrom, target=/n"]\n'),
    "vifs": ('name="v"\nkernel="/k"\nvif=["", "mac=00:16:3E:0a:0b:0c,bridge=br0", '
             '"ip=10.0.0.1 10.0.0.2,script=vif-route,vifname=v0,model=rtl8139,type=vif",'
             '"backend=dom1,gatewaydev=eth0,mtu=1400,rate=5MB/s", "rate=1Gb/s@1s,devid=9",'
             '"rate=100Kb/s@500us,type=ioemu", "netdev=eth1", "rate=3B/s@5", "accel=x,bridge=b"]\n'),
    "hvm-full": ('name="h"\ntype="hvm"\nmemory=512\nvcpus=1\nfirmware="uefi"\nboot="c"\n'
                 'serial=["pty","file:/tmp/s"]\nusbdevice=["tablet","mouse"]\nvga="qxl"\n'
                 'vnc=0\nsdl=1\nopengl=1\ndisplay=":0"\nxauthority="/x"\nkeymap="de"\n'
                 'spice=1\nspiceport=6000\nspicetls_port=6001\nspicehost="h"\n'
                 'spicedisable_ticketing=1\nspicepasswd="p"\nspiceagent_mouse=1\nspicevdagent=1\n'
                 'spice_clipboard_sharing=1\nspiceusbredirection=2\nspice_image_compression="auto_glz"\n'
                 'spice_streaming_video="filter"\nnographic=0\ngfx_passthru=0\nusb=0\nusbversion=2\n'
                 'vkb_device=0\nsoundhw="hda"\nxen_platform_pci=1\nvendor_device="xenserver"\n'
                 'hdtype="ahci"\npae=1\nacpi_s3=0\nacpi_s4=0\nacpi_laptop_slate=1\nnx=1\nhpet=0\n'
                 'vpt_align=1\napic=1\nsmbios_firmware="/s"\nacpi_firmware="/a"\n'
                 'rdm_mem_boundary=1024\nmca_caps=["lmce"]\ntimer_mode=1\naltp2mhvm=1\n'),
    "hvm-bios": 'name="h"\ntype="hvm"\nbios="ovmf"\nbios_path_override="/o"\nfirmware_override="/f"\nstdvga=0\nkernel="/x/hvmloader"\n',
    "hvm-firmware-path": 'name="h"\ntype="hvm"\nfirmware="/usr/lib/custom.bin"\n',
    "hvm-firmware-bios": 'name="h"\ntype="hvm"\nfirmware="bios"\nkernel="/vmlinuz"\n',
    "hvm-gfx": 'name="h"\ntype="hvm"\ngfx_passthru="igd"\nserial="pty"\nusbdevice="tablet"\n',
    "hvm-dm": ('name="h"\ntype="hvm"\ndevice_model_override="/q"\ndevice_model_version="qemu-xen"\n'
               'device_model_stubdomain_override=0\ndevice_model_user="u"\nstubdomain_kernel="/sk"\n'
               'stubdomain_ramdisk="/sr"\nstubdomain_memory=64\ndevice_model_args=["-a"]\n'
               'device_model_args_pv=["-b"]\ndevice_model_args_hvm=["-c","-d"]\n'),
    "pv-vnc": 'name="p"\nkernel="/k"\nvnc=1\nvnclisten="0.0.0.0"\nvncpasswd="pw"\nvncdisplay=2\nvncunused=1\nsdl=0\nkeymap="en-us"\n',
    "pv-vnc-off": 'name="p"\nkernel="/k"\nvnc=0\nvnclisten="0.0.0.0"\n',
    "arm-x86": 'name="a"\nkernel="/k"\nvuart="sbsa_uart"\ngic_version="v3"\ntee="optee"\nmsr_relaxed=1\npassthrough="disabled"\n',
    "grammar-mix": ('# comment\n\nname = \'g\' ; kernel = "/k"  # trailing\nmemory = 0x40\n'
                    'vcpus = 02\nextra = "a\\tb\\"c\\\\"\nextra += " more"\n'
                    'disk = [ "/a,raw,xvda",\n\n  "/b,raw,xvdb", ]\ndisk += [ "/c,raw,xvdc" ]\n'
                    'memory = 96'),
    "strings-escapes": 'name="e\\n\\r\\a\\b\\f\\v\\\'"\nkernel=\'/k\\101\\"\'\n',
    "unknown-keys": 'name="u"\nkernel="/k"\nfoo="bar"\nvif2=["x"]\n',
    "memory-quoted": 'name="q"\nkernel="/k"\nmemory="256"\nmaxmem="0x200"\n',
    "empty-lists": 'name="e"\nkernel="/k"\ndisk=[]\nvif=[]\npci=[]\ncpus=[]\nvcpus=2\n',
    "viridian-list": 'name="v"\ntype="hvm"\nviridian=["base","!freq","all","defaults","!stimer"]\n',
    "viridian-bool": 'name="v"\ntype="hvm"\nviridian=1\n',
    "viridian-empty": 'name="v"\ntype="hvm"\nviridian=[]\n',
    "passthrough-resources": ('name="p"\nkernel="/k"\nioports=["3f8-3ff","80","0x2f8-0x2ff"]\n'
                              'irqs=["4","15"]\niomem=["fe000,2","0xfd000,1@20"]\n'),
    "pci-globals": ('name="p"\ntype="hvm"\npci_permissive=1\npci_msitranslate=1\n'
                    'pci_power_mgmt=1\npci_seize=1\npci=["00:1b.0","01:00.0,permissive=0"]\n'),
    "small-devices": ('name="h"\nkernel="/k"\n'
                      'channel=["name=org.x.a,connection=pty","name=b, connection = socket, path=/tmp/s"]\n'
                      'vtpm=["backend=vt,uuid=0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"]\n'
                      'p9=["tag=t,path=/p,security_model=none","tag=u,path=/q,security_model=mapped,backend=d1"]\n'
                      'dtdev=["/soc/x"]\npvcalls=["backend=d2",""]\n'
                      'vfb=["vnc=1,vncdisplay=3,keymap=de","sdl=1,display=:0,opengl=1,xauthority=/x,vnclisten=a,vncpasswd=p,vncunused=0"]\n'
                      'vkb=["backend-type=linux,width=800,height=600,unique-id=k1,backend=d3",'
                      '"backend-type=qemu,multi-touch-width=10,multi-touch-height=5,multi-touch-num-contacts=2",'
                      '"backend-type=linux,feature-disable-keyboard=1,feature-abs-pointer=0x1"]\n'),
    "vfb-list-wins-over-vnc": 'name="p"\nkernel="/k"\nvnc=1\nvfb=["vnc=0"]\n',
    "channel-unknown-key": 'name="p"\nkernel="/k"\nchannel=["connection=pty,colour=red"]\n',
    "usb-devices": ('name="h"\ntype="hvm"\nusbctrl=["type=qusb,version=2,ports=4","version=3",'
                    '"type=PV"]\nusbdev=["hostbus=1,hostaddr=0x2,controller=0,port=1",'
                    '"type=hostdev,hostbus=3","hostaddr=0x105,type=hostdev"]\n'),
    "zero-vcpus": 'name="z"\nkernel="/k"\nvcpus=0\n',
}

OVERRIDES = {
    "override-memory": ('name="o"\nkernel="/k"\nmemory=64\n', ["memory=512", "vcpus=2"]),
    "override-name": ('name="o"\nkernel="/k"\n', ['name="other"', 'cpus="1"', "vcpus=1"]),
}

# Rejected by real xl (non-zero exit) and by us (ConfigError).
REJECTED = {
    "no-name": 'kernel="/k"\n',
    "bad-type": 'name="x"\ntype="xen"\n',
    "builder-contradicts": 'name="x"\ntype="pv"\nbuilder="hvm"\n',
    "no-kernel": 'name="x"\ntype="pvh"\n',
    "bad-action": 'name="x"\nkernel="/k"\non_crash="explode"\n',
    "maxvcpus-lt-vcpus": 'name="x"\nkernel="/k"\nvcpus=4\nmaxvcpus=2\n',
    "bad-uuid": 'name="x"\nkernel="/k"\nuuid="1234"\n',
    "bad-cpus": 'name="x"\nkernel="/k"\nvcpus=1\ncpus="3-1"\n',
    "cpus-not-all": 'name="x"\nkernel="/k"\nvcpus=1\ncpus="^all"\n',
    "disk-no-vdev": 'name="x"\nkernel="/k"\ndisk=["/a,raw"]\n',
    "disk-bad-format": 'name="x"\nkernel="/k"\ndisk=["/a,zip,xvda"]\n',
    "disk-bad-access": 'name="x"\nkernel="/k"\ndisk=["/a,raw,xvda,rx"]\n',
    "disk-too-many": 'name="x"\nkernel="/k"\ndisk=["/a,raw,xvda,rw,x"]\n',
    "disk-unknown-param": 'name="x"\nkernel="/k"\ndisk=["foo=bar,vdev=xvda,target=/a"]\n',
    "disk-bad-prefix": 'name="x"\nkernel="/k"\ndisk=["zzz:/a,xvda,w"]\n',
    "disk-respecified": 'name="x"\nkernel="/k"\ndisk=["vdev=xvda,vdev=xvdb,target=/a"]\n',
    "disk-no-target": 'name="x"\nkernel="/k"\ndisk=["vdev=xvda"]\n',
    "vif-bad-rate": 'name="x"\nkernel="/k"\nvif=["rate=10Mbit"]\n',
    "vif-bad-interval": 'name="x"\nkernel="/k"\nvif=["rate=10Mb/s@1h"]\n',
    "vif-zero-rate": 'name="x"\nkernel="/k"\nvif=["rate=0Mb/s"]\n',
    "grant-range": 'name="x"\nkernel="/k"\nmax_grant_frames=-1\n',
    "vga": 'name="x"\ntype="hvm"\nvga="vesa"\n',
    "bad-bios": 'name="x"\ntype="hvm"\nbios="coreboot"\n',
    "dm-version": 'name="x"\ntype="hvm"\ndevice_model_version="qemu-9"\n',
    "timer-pv": 'name="x"\nkernel="/k"\ntimer_mode="no_missed_ticks_pending"\n',
    "firmware-and-kernel": 'name="x"\nkernel="/k"\nfirmware="pvgrub64"\n',
    "firmware-pv-other": 'name="x"\nfirmware="seabios"\n',
    "vnc-display-twice": 'name="x"\ntype="hvm"\nvnclisten="1.2.3.4:1"\nvncdisplay=1\n',
    "syntax": 'name="x"\nmemory = 512 * 2\n',
    "python": 'name="x"\ndisk = ( "a" )\n',
    "upper-key": 'Name="x"\n',
    "unterminated": 'name="x\n',
    "suffix": 'name="x"\nmemory=1K\n',
    "concat-mixed": 'name="x"\nkernel="/k"\nextra="a"\nextra+=["b"]\n',
    "comment-eof": 'name="x"\nkernel="/k" # no newline',
    "pci-bad": 'name="x"\nkernel="/k"\npci=["00:1g.0"]\n',
    "negative-number": 'name="x"\nkernel="/k"\nrtc_timeoffset=-3600\n',
    "hex-escape": 'name="x\\x41"\nkernel="/k"\n',
    "octal-escape-short": 'name="x\\1"\nkernel="/k"\n',
    "empty-affinity": 'name="x"\nkernel="/k"\nvcpus=1\ncpus="1,^1"\n',
    "empty-affinity-list": 'name="x"\nkernel="/k"\nvcpus=2\ncpus=["0",""]\n',
    "affinity-beyond-host": 'name="x"\nkernel="/k"\nvcpus=1\ncpus="100"\n',
    "viridian-unknown": 'name="x"\ntype="hvm"\nviridian=["warp"]\n',
    "irq-bad": 'name="x"\nkernel="/k"\nirqs=["4x"]\n',
    "ioport-too-big": 'name="x"\nkernel="/k"\nioports=["ffffffff"]\n',
    "iomem-bad": 'name="x"\nkernel="/k"\niomem=["fe000"]\n',
    "vtpm-no-backend": 'name="x"\nkernel="/k"\nvtpm=["uuid=0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"]\n',
    "vtpm-bad-uuid": 'name="x"\nkernel="/k"\nvtpm=["backend=a,uuid=x"]\n',
    "p9-missing": 'name="x"\nkernel="/k"\np9=["tag=t,path=/p"]\n',
    "p9-unknown": 'name="x"\nkernel="/k"\np9=["tag=t,path=/p,security_model=none,x=1"]\n',
    "pvcalls-unknown": 'name="x"\nkernel="/k"\npvcalls=["x=1"]\n',
    "channel-no-connection": 'name="x"\nkernel="/k"\nchannel=["name=a"]\n',
    "channel-socket-no-path": 'name="x"\nkernel="/k"\nchannel=["connection=socket"]\n',
    "channel-bad-connection": 'name="x"\nkernel="/k"\nchannel=["connection=tcp"]\n',
    "vkb-no-type": 'name="x"\nkernel="/k"\nvkb=["width=3"]\n',
    "vkb-bad-type": 'name="x"\nkernel="/k"\nvkb=["backend-type=usb"]\n',
    "vkb-unknown": 'name="x"\nkernel="/k"\nvkb=["backend-type=qemu,x=1"]\n',
    "vkb-mt-incomplete": 'name="x"\nkernel="/k"\nvkb=["backend-type=qemu,feature-multi-touch=1"]\n',
    "usbctrl-bad-type": 'name="x"\ntype="hvm"\nusbctrl=["type=ehci"]\n',
    "usbctrl-unknown": 'name="x"\ntype="hvm"\nusbctrl=["speed=3"]\n',
    "usbdev-bad-type": 'name="x"\ntype="hvm"\nusbdev=["type=hub"]\n',
    "usbdev-unknown": 'name="x"\ntype="hvm"\nusbdev=["bus=1"]\n',
    "mca": 'name="x"\ntype="hvm"\nmca_caps=["foo"]\n',
}

# Real xl only warns and carries on; we refuse (stricter, never silent).
STRICTER = {
    "vif-bad-type": 'name="x"\nkernel="/k"\nvif=["type=tap"]\n',
    "vif-unknown-key": 'name="x"\nkernel="/k"\nvif=["colour=red"]\n',
    "vif-bad-mac": 'name="x"\nkernel="/k"\nvif=["mac=00:16:3e:zz"]\n',
    "memory-not-number": 'name="x"\nkernel="/k"\nmemory="lots"\n',
    "memory-list": 'name="x"\nkernel="/k"\nmemory=[1]\n',
    "disk-not-list": 'name="x"\nkernel="/k"\ndisk="/a,raw,xvda"\n',
    "memory-plus-equals": 'name="x"\nkernel="/k"\nmemory+=5\n',
    "ioport-trailing-junk": 'name="x"\nkernel="/k"\nioports=["3f8x"]\n',
    "ioport-reversed": 'name="x"\nkernel="/k"\nioports=["3ff-3f8"]\n',
    "vfb-unknown-key": 'name="x"\nkernel="/k"\nvfb=["colour=red"]\n',
    "vfb-token-without-equals": 'name="x"\nkernel="/k"\nvfb=["vnc=1,sdl,keymap=de"]\n',
    "disk-empty-vdev": 'name="x"\nkernel="/k"\ndisk=["vdev=,target=/a"]\n',
}

# Disk specs compared one by one (the JSON of the resulting disk).
DISK_SPECS = [
    "/dev/vg/a,raw,xvda,rw", "phy:/dev/b,xvdb,r", "/c,qcow2,xvdc,ro",
    "vdev=xvdc,format=qcow,access=ro,target=/c", "qcow2:/d.img,xvdd,w",
    "file:/e.iso,hdc:cdrom,r", ",,hdd:cdrom,r", ",raw,hdd:cdrom,r", "/f,,xvde",
    "/g,vhd,xvdf,w,", "vdev=xvdg,backendtype=qdisk,backend=dom1,script=block-x,"
    "discard,direct-io-safe,target=/h", "vdev=xvdh,devtype=cdrom,target=",
    "vdev=xvdi,no-discard,colo,colo-host=h,colo-port=7,colo-export=e,"
    "active-disk=a,hidden-disk=b,target=/i", "vdev=xvdj,format=qed,specification=xen,target=/j",
    "nbd:host:1234,xvdk,w", "  /k ,  raw,xvdl", "tap:aio:/l,xvdm",
    "vdev=xvdn, cdrom, target=/n", "vdev=xvdo,target=/o,with,commas", "/p,raw,xvdp:disk,w",
    "iscsi:iqn.x,xvdq,w", "drbd:res,xvdr", "vhd:/s.vhd,xvds,w", "aio:/t,xvdt",
    "tapdisk:/u,xvdu", "ioemu:/v,xvdv", "/w,empty,xvdw", "backendtype=phy,vdev=xvdx,target=/x",
    "devtype=disk,vdev=xvdy,target=/y", "/a,raw,xvda,",
    "vdev=xvdb,access=w,target=/b", "vdev=xvdc,access=,target=/c",
]
DISK_SPECS_REJECTED = [
    "/a,raw", "/a,zip,xvda", "/a,raw,xvda,rx", "/a,raw,xvda,rw,x",
    "foo=bar,vdev=xvda,target=/a", "zzz:/a,xvda,w", "vdev=xvda,vdev=xvdb,target=/a",
    "vdev=xvda", "format=raw,format=qcow2,vdev=x,target=/a", "devtype=floppy,vdev=x,target=/a",
    "backendtype=nfs,vdev=x,target=/a", "/a,raw,xvda:tape,w", "=x", "trusted,xvdz", "target=/o,with,commas",
    "specification=virtio9,vdev=x,target=/a", "colo-port=x,vdev=x,target=/a",
]
# libxlutil ignores one bad character at the very end of a disk spec
# (flex reaches EOF before its error rule runs); we report it.
DISK_SPECS_STRICTER = ["/a,raw,xvda,w,="]
