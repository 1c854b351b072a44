/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* immod's D-Bus names (dbus-api.md), shared by the daemon and its front ends. */

#define IMMOD_BUS_NAME "org.immod.Immod1"
#define IMMOD_INTERFACE_PREFIX "org.immod.Immod1."
#define IMMOD_MANAGER_PATH "/org/immod/Immod1"
#define IMMOD_MANAGER_INTERFACE IMMOD_INTERFACE_PREFIX "Manager"
#define IMMOD_PROCEDURE_PATH_PREFIX IMMOD_MANAGER_PATH "/procedure"
#define IMMOD_PROCEDURE_INTERFACE IMMOD_INTERFACE_PREFIX "Procedure"
#define IMMOD_ERROR_PREFIX IMMOD_INTERFACE_PREFIX "Error."
