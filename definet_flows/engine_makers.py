"""atomate2 / custodian subclasses used by :mod:`definet_flows.engines`.

Kept apart so that importing :mod:`definet_flows.engines` stays light: this module imports
atomate2's CP2K jobs and custodian's VASP/CP2K handlers at import time. The classes must live
in an importable module because jobflow serialises Makers and handlers by module and name.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from atomate2.cp2k.jobs.base import cp2k_job
from atomate2.cp2k.jobs.core import RelaxMaker
from custodian.cp2k.validators import Cp2kOutputValidator
from custodian.vasp.handlers import UnconvergedErrorHandler

from definet_flows.engines import ensure_cp2k_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from jobflow import Response
    from pymatgen.core import Structure

__all__ = ["Cp2kCompletedValidator", "Cp2kRelaxMaker", "ElectronicUnconvergedErrorHandler"]


@dataclass
class Cp2kRelaxMaker(RelaxMaker):
    """atomate2's CP2K ``RelaxMaker``, choosing basis and potential per element at run time.

    On the machine that runs the job it sets pymatgen's CP2K environment defaults (see
    :func:`definet_flows.engines.ensure_cp2k_env`), then asks for the named basis set and
    pseudopotential for each element of the structure; pymatgen matches them in its CP2K data
    directory (valence of the potential matched to the basis).

    Parameters
    ----------
    name : str
        The job name.
    basis : str
        CP2K basis set name, e.g. ``DZVP-MOLOPT-SR-GTH``.
    potential : str
        CP2K pseudopotential name, e.g. ``GTH-PBE``.
    omp_threads : int or None
        ``OMP_NUM_THREADS`` for the CP2K processes (1 when running several MPI ranks);
        None leaves the environment alone.

    Other parameters are those of :class:`atomate2.cp2k.jobs.core.RelaxMaker`.
    """

    name: str = "cp2k defect relax"
    basis: str = "DZVP-MOLOPT-SR-GTH"
    potential: str = "GTH-PBE"
    omp_threads: int | None = None

    @cp2k_job
    def make(self, structure: Structure, prev_dir: str | Path | None = None) -> Response:
        """Relax a structure with CP2K.

        Parameters
        ----------
        structure : Structure
            The structure to relax.
        prev_dir : str or Path or None
            A previous CP2K calculation directory to copy output files from.

        Returns
        -------
        Response
            atomate2's response whose output is a CP2K ``TaskDocument``.
        """
        ensure_cp2k_env()
        generator = self.input_set_generator
        settings = dict(generator.user_input_settings)
        settings["basis_and_potential"] = {
            **settings.get("basis_and_potential", {}),
            **{
                el: {"basis": self.basis, "potential": self.potential}
                for el in structure.symbol_set
            },
        }
        maker = replace(self, input_set_generator=replace(generator, user_input_settings=settings))
        threads = {} if self.omp_threads is None else {"OMP_NUM_THREADS": str(self.omp_threads)}
        with _environment(**threads):
            return RelaxMaker.make.original(maker, structure, prev_dir=prev_dir)


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Cp2kCompletedValidator(Cp2kOutputValidator):
    """Valid when CP2K finished and its last SCF converged; an unconverged GEO_OPT is valid.

    custodian's ``Cp2kOutputValidator`` also fails a GEO_OPT that stopped at MAX_ITER, which
    turns the step cap into an error; here that run is a result (``converged=False``).
    """

    def check(self, directory: str = "./") -> bool:
        """Return True (invalid) if CP2K did not finish or its last SCF did not converge."""
        from pymatgen.io.cp2k.outputs import Cp2kOutput

        try:
            out = Cp2kOutput(os.path.join(directory, self.output_file))
            out.ran_successfully()
            out.convergence()
            # pymatgen reads these markers backwards: scf[0] is the LAST SCF of the run
            scf = out.data.get("scf_converged") or [True]
            invalid = not (out.completed and scf[0])
        except Exception:
            invalid = True
        self._check = invalid
        return invalid


class ElectronicUnconvergedErrorHandler(UnconvergedErrorHandler):
    """custodian's ``UnconvergedErrorHandler``, triggered by an unconverged SCF only.

    The parent also restarts a relaxation that reached NSW from CONTCAR; with that the step
    cap would not hold and the ionic steps before the restart would not be counted.
    """

    def check(self, directory: str = "./") -> bool:
        """Return True if the last electronic cycle did not converge."""
        from pymatgen.io.vasp.outputs import Vasprun

        try:
            vasprun = Vasprun(
                os.path.join(directory, self.output_filename),
                parse_dos=False,
                parse_eigen=False,
                parse_projected_eigen=False,
                parse_potcar_file=False,
            )
        except Exception:
            return False
        return not vasprun.converged_electronic
