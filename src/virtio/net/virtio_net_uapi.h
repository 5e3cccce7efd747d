// <linux/virtio_net.h>, made includable from C++: its struct
// virtio_net_ctrl_hdr (the control queue, which we do not offer) has a member
// named `class`. Every file of ours includes the header through this one.
#pragma once

#include <linux/if_ether.h>
#include <linux/types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_types.h>

#define class class_
#include <linux/virtio_net.h>
#undef class
